// drivekit's simulation step on the GPU: the same services as the CPU backend (src/sim/*), over
// the same structure-of-arrays state, one thread per rollout (evaluation, driver, controller,
// clock) or per agent (traffic). Every function names the Rust function it mirrors; the
// operations and their order are the same, so results agree to rounding (bit for bit in the
// emulator, which uses the host's libm like Rust does).

// ---- scene look-ups -------------------------------------------------------------------------

// scene::sampling::sample of track `track` (0: the ego, 1 + k: agent k) at t. False: absent.
DK_DEV bool dk_sample(const DkArgs& a, const DkScene& sc, int track, i64 t, double* x, double* y,
                      double* yaw, double* speed) {
  const i64* ts = a.ts + sc.ts_off;
  int n = sc.n_ts;
  int lo = 0, hi = n;  // partition_point(ts < t)
  while (lo < hi) {
    int mid = (lo + hi) / 2;
    if (ts[mid] < t) lo = mid + 1; else hi = mid;
  }
  int i = lo;
  int base = sc.sample_off + track * n;
  if (i < n && ts[i] == t) {
    if (!a.tk_valid[base + i]) return false;
    *x = a.tk_x[base + i];
    *y = a.tk_y[base + i];
    *yaw = a.tk_yaw[base + i];
    *speed = dk_norm(a.tk_vx[base + i], a.tk_vy[base + i]);
    return true;
  }
  if (i == 0 || i == n || !a.tk_valid[base + i - 1] || !a.tk_valid[base + i]) return false;
  i64 t0 = ts[i - 1], t1 = ts[i];
  double f = (double)(t - t0) / (double)(t1 - t0);
  int p = base + i - 1, q = base + i;
  *x = a.tk_x[p] + (a.tk_x[q] - a.tk_x[p]) * f;
  *y = a.tk_y[p] + (a.tk_y[q] - a.tk_y[p]) * f;
  *yaw = dk_wrap(a.tk_yaw[p] + dk_wrap(a.tk_yaw[q] - a.tk_yaw[p]) * f);
  double vx = a.tk_vx[p] + (a.tk_vx[q] - a.tk_vx[p]) * f;
  double vy = a.tk_vy[p] + (a.tk_vy[q] - a.tk_vy[p]) * f;
  *speed = dk_norm(vx, vy);
  return true;
}

// geometry::Polyline::at: the point at arc length s and its segment's heading.
DK_DEV void dk_poly_at(const DkArgs& a, int poly, double s, double* px, double* py, double* heading) {
  int first = a.poly_start[poly], n = a.poly_start[poly + 1] - first;
  const double* cum = a.pt_cum + first;
  s = dk_clamp(s, 0.0, cum[n - 1]);
  int lo = 0, hi = n;  // partition_point(cum < s)
  while (lo < hi) {
    int mid = (lo + hi) / 2;
    if (cum[mid] < s) lo = mid + 1; else hi = mid;
  }
  int i = lo > 0 ? lo - 1 : 0;
  if (i > n - 2) i = n - 2;
  double len = cum[i + 1] - cum[i];
  double t = len > 0.0 ? (s - cum[i]) / len : 0.0;
  double ax = a.pt_x[first + i], ay = a.pt_y[first + i];
  double bx = a.pt_x[first + i + 1], by = a.pt_y[first + i + 1];
  *px = ax + (bx - ax) * t;
  *py = ay + (by - ay) * t;
  *heading = atan2(by - ay, bx - ax);
}

// geometry::project_on_polyline: distance from p, and the arc length of the nearest point.
DK_DEV double dk_poly_project(const DkArgs& a, int poly, double px, double py, double* s_out) {
  int first = a.poly_start[poly], n = a.poly_start[poly + 1] - first;
  const double* xs = a.pt_x + first;
  const double* ys = a.pt_y + first;
  if (n == 1) {
    *s_out = 0.0;
    return dk_norm(px - xs[0], py - ys[0]);
  }
  double best_d = DK_INF, best_s = 0.0, s = 0.0;
  for (int i = 0; i + 1 < n; i++) {
    double seg = dk_norm(xs[i + 1] - xs[i], ys[i + 1] - ys[i]);
    double t;
    double d = dk_segment_distance(xs[i], ys[i], xs[i + 1], ys[i + 1], px, py, &t);
    if (d < best_d) {
      best_d = d;
      best_s = s + t * seg;
    }
    s += seg;
  }
  *s_out = best_s;
  return best_d;
}

// geometry::contains: even-odd rule.
DK_DEV bool dk_contains(const DkArgs& a, int poly, double px, double py) {
  int first = a.poly_start[poly], n = a.poly_start[poly + 1] - first;
  if (n < 3) return false;
  const double* xs = a.pt_x + first;
  const double* ys = a.pt_y + first;
  bool inside = false;
  int j = n - 1;
  for (int i = 0; i < n; i++) {
    if ((ys[i] > py) != (ys[j] > py)) {
      double x = xs[i] + (py - ys[i]) * (xs[j] - xs[i]) / (ys[j] - ys[i]);
      if (px < x) inside = !inside;
    }
    j = i;
  }
  return inside;
}

// geometry::distance_to_ring.
DK_DEV double dk_ring_distance(const DkArgs& a, int poly, double px, double py) {
  int first = a.poly_start[poly], n = a.poly_start[poly + 1] - first;
  const double* xs = a.pt_x + first;
  const double* ys = a.pt_y + first;
  double d = DK_INF;
  for (int i = 0; i < n; i++) {
    int k = (i + 1) % n;
    d = dk_min(d, dk_segment_distance2(xs[i], ys[i], xs[k], ys[k], px, py));
  }
  return sqrt(d);
}

// ---- metrics --------------------------------------------------------------------------------

// Collision classes (metrics::ego_step::CollisionClass).
#define DK_STOPPED_EGO 0
#define DK_STOPPED_TRACK_SIDE 1
#define DK_STOPPED_TRACK_FRONT 2
#define DK_REAR 3
#define DK_FRONT 4
#define DK_LATERAL 5

DK_DEV bool dk_at_fault(int c) { return !(c == DK_STOPPED_EGO || c == DK_REAR); }

// metrics::ttc::relative_cos.
DK_DEV double dk_relative_cos(double fx, double fy, double heading, double tx, double ty) {
  double dx = tx - fx, dy = ty - fy;
  double s = sin(heading), c = cos(heading);
  return (c * dx + s * dy) / dk_norm(dx, dy);
}

// metrics::ego_step::touches_front_edge.
DK_DEV bool dk_touches_front(double ex, double ey, double eyaw, double elen, double ewid,
                             const DkFrame* track) {
  double s = sin(eyaw), c = cos(eyaw);
  DkFrame edge = dk_frame(ex + c * elen / 2.0, ey + s * elen / 2.0, eyaw, 0.0, ewid);
  return dk_overlaps(&edge, track);
}

// metrics::ego_step::classify.
DK_DEV int dk_classify(double ex, double ey, double eyaw, double elen, double ewid, double espeed,
                       double rear_x, double rear_y, const DkFrame* track, double tx, double ty,
                       double tspeed, bool is_static) {
  if (espeed <= DK_EGO_STOPPED_MPS) return DK_STOPPED_EGO;
  if (is_static || tspeed <= DK_TRACK_STOPPED_MPS)
    return dk_touches_front(ex, ey, eyaw, elen, ewid, track) ? DK_STOPPED_TRACK_FRONT
                                                             : DK_STOPPED_TRACK_SIDE;
  if (dk_relative_cos(rear_x, rear_y, eyaw, tx, ty) < DK_BEHIND_COS) return DK_REAR;
  if (dk_touches_front(ex, ey, eyaw, elen, ewid, track)) return DK_FRONT;
  return DK_LATERAL;
}

// metrics::ttc::Mover::swept, as a frame.
DK_DEV DkFrame dk_swept(double x, double y, double yaw, double len, double wid, double speed,
                        double dt, double n) {
  double s = sin(yaw), c = cos(yaw);
  double dx = c * speed * dt, dy = s * speed * dt;
  return dk_frame(x + dx * n / 2.0, y + dy * n / 2.0, yaw, len + dk_norm(dx * n, dy * n), wid);
}

// metrics::comfort ring: push.
DK_DEV void dk_ring_push(double* v, int* n, double x) {
  if (*n < DK_COMFORT_WINDOW) {
    v[*n] = x;
    *n += 1;
  } else {
    for (int i = 0; i + 1 < DK_COMFORT_WINDOW; i++) v[i] = v[i + 1];
    v[DK_COMFORT_WINDOW - 1] = x;
  }
}

// metrics::comfort ring: least-squares slope over the full window (false: not full yet).
DK_DEV bool dk_ring_slope(const double* v, int n, double dt, double* out) {
  if (n < DK_COMFORT_WINDOW) return false;
  double c = ((double)DK_COMFORT_WINDOW - 1.0) / 2.0;
  double num = 0.0, den = 0.0;
  for (int i = 0; i < DK_COMFORT_WINDOW; i++) {
    double d = (double)i - c;
    num += d * v[i];
    den += d * d;
  }
  *out = num / den / dt;
  return true;
}

// metrics::comfort::ComfortTracker::push. Rings: speed, yaw, lon accel, lat accel, yaw rate.
DK_DEV bool dk_comfort_push(double* rings, int* ns, double speed, double yaw, double dt) {
  double* sp = rings;
  double* yw = rings + DK_COMFORT_WINDOW;
  double* lon = rings + 2 * DK_COMFORT_WINDOW;
  double* lat = rings + 3 * DK_COMFORT_WINDOW;
  double* wr = rings + 4 * DK_COMFORT_WINDOW;
  if (ns[1] != 0) {
    double prev = yw[ns[1] - 1];
    yaw = prev + dk_wrap(yaw - prev);
  }
  dk_ring_push(sp, &ns[0], speed);
  dk_ring_push(yw, &ns[1], yaw);
  double acc, w;
  if (!dk_ring_slope(sp, ns[0], dt, &acc) || !dk_ring_slope(yw, ns[1], dt, &w)) return true;
  double la = speed * w;
  dk_ring_push(lon, &ns[2], acc);
  dk_ring_push(lat, &ns[3], la);
  dk_ring_push(wr, &ns[4], w);
  bool ok = (DK_COMFORT_MIN_LON_ACCEL <= acc && acc <= DK_COMFORT_MAX_LON_ACCEL) &&
            fabs(la) <= DK_COMFORT_MAX_ABS_LAT_ACCEL && fabs(w) <= DK_COMFORT_MAX_ABS_YAW_RATE;
  double jl, jlat, yacc;
  if (dk_ring_slope(lon, ns[2], dt, &jl) && dk_ring_slope(lat, ns[3], dt, &jlat) &&
      dk_ring_slope(wr, ns[4], dt, &yacc)) {
    ok = ok && (fabs(jl) <= DK_COMFORT_MAX_ABS_LON_JERK &&
                dk_norm(jl, jlat) <= DK_COMFORT_MAX_ABS_MAG_JERK &&
                fabs(yacc) <= DK_COMFORT_MAX_ABS_YAW_ACCEL);
  }
  return ok;
}

// metrics::direction::LaneIndex::locate: the best-aligned lane containing p (-1: none).
DK_DEV int dk_locate(const DkArgs& a, const DkScene& sc, double px, double py, double heading,
                     double* s_out, double* h_out) {
  int best = -1;
  double best_mis = 0.0;
  for (int l = sc.lane_off; l < sc.lane_off + sc.n_lanes; l++) {
    const double* b = a.lane_bbox + 4 * l;
    if (px < b[0] || px > b[2] || py < b[1] || py > b[3]) continue;
    int center = a.lane_center[l], poly = a.lane_poly[l];
    double s;
    bool inside;
    if (poly >= 0) {
      inside = dk_contains(a, poly, px, py);
    } else {
      inside = dk_poly_project(a, center, px, py, &s) <= DK_DIR_HALF_WIDTH_M;
    }
    if (!inside) continue;
    dk_poly_project(a, center, px, py, &s);
    double qx, qy, h;
    dk_poly_at(a, center, s, &qx, &qy, &h);
    double mis = fabs(dk_wrap(heading - h));
    if (best < 0 || mis < best_mis) {
      best = l - sc.lane_off;
      best_mis = mis;
      *s_out = s;
      *h_out = h;
    }
  }
  return best;
}

// metrics::direction::DirectionTracker::push. state: window length, head, last lane (-1: none),
// has last; last: lane s, point x, y.
DK_DEV double dk_direction_push(const DkArgs& a, const DkScene& sc, u32 r, double px, double py,
                                double heading) {
  int* state = a.dir_state + 4 * r;
  double* last = a.dir_last + 3 * r;
  double* win = a.dir_buf + (unsigned long long)a.dir_n * r;
  double s = 0.0, h = 0.0;
  int here = dk_locate(a, sc, px, py, heading, &s, &h);
  double progress = 0.0;
  if (state[3] && state[2] >= 0 && here >= 0 && state[2] == here) {
    progress = s - last[0];
  } else if (state[3] && here >= 0) {
    double sn = sin(h), cs = cos(h);
    progress = (px - last[1]) * cs + (py - last[2]) * sn;
  }
  state[3] = 1;
  state[2] = here;
  last[0] = here >= 0 ? s : 0.0;
  last[1] = px;
  last[2] = py;
  // Ring of the last dir_n values; summed oldest first.
  int len = state[0], head = state[1];
  int n = (int)a.dir_n;
  if (len < n) {
    win[(head + len) % n] = progress;
    len += 1;
  } else {
    win[head] = progress;
    head = (head + 1) % n;
  }
  state[0] = len;
  state[1] = head;
  double sum = 0.0;
  for (int i = 0; i < len; i++) sum += win[(head + i) % n];
  if (sum > -DK_DIR_COMPLIANCE_M) return 1.0;
  if (sum > -DK_DIR_VIOLATION_M) return 0.5;
  return 0.0;
}

// ---- traffic rules (metrics::traffic_rules) ------------------------------------------------

// traffic_rules::ts_index: the last timestamp at or before t (0 before the first).
DK_DEV int dk_ts_index(const DkArgs& a, const DkScene& sc, i64 t) {
  int lo = 0, hi = sc.n_ts;
  while (lo < hi) {
    int mid = lo + (hi - lo) / 2;
    if (a.ts[sc.ts_off + mid] <= t) lo = mid + 1;
    else hi = mid;
  }
  return lo > 0 ? lo - 1 : 0;
}

// TrafficRules::red_at.
DK_DEV bool dk_red(const DkArgs& a, const DkScene& sc, int signal, int ti) {
  return signal >= 0 && a.red[sc.red_off + signal * sc.n_ts + ti] != 0;
}

// traffic_rules::segments_intersect.
DK_DEV double dk_cross(double ox, double oy, double ax, double ay, double bx, double by) {
  return (ax - ox) * (by - oy) - (ay - oy) * (bx - ox);
}
DK_DEV bool dk_segments_intersect(double p1x, double p1y, double p2x, double p2y, double q1x,
                                  double q1y, double q2x, double q2y) {
  double d1 = dk_cross(q1x, q1y, q2x, q2y, p1x, p1y);
  double d2 = dk_cross(q1x, q1y, q2x, q2y, p2x, p2y);
  double d3 = dk_cross(p1x, p1y, p2x, p2y, q1x, q1y);
  double d4 = dk_cross(p1x, p1y, p2x, p2y, q2x, q2y);
  return (d1 * d2 <= 0.0) && (d3 * d4 <= 0.0);
}

// traffic_rules::at_sign.
DK_DEV bool dk_at_sign(const DkArgs& a, const DkScene& sc, int sign, double cx, double cy,
                       double fx, double fy) {
  for (int q = sc.sl_off; q < sc.sl_off + sc.n_sl; q++) {
    const double* l = a.sl + 5 * q;
    if (a.sl_idx[2 * q + 1] != sign || fx * l[2] + fy * l[3] < -0.17) continue;
    double dx = l[0] - cx, dy = l[1] - cy;
    double ahead = dx * l[2] + dy * l[3];
    double side = -dx * l[3] + dy * l[2];
    if (ahead >= -DK_STOP_PAST_M && ahead <= DK_STOP_PROXIMITY_M && fabs(side) <= l[4]) return true;
  }
  return false;
}

// traffic_rules::check. mem: red_last, stop_target, stop_done, stop_failed.
DK_DEV void dk_rules_check(const DkArgs& a, const DkScene& sc, int* mem, double cx, double cy,
                           double yaw, double len, double speed, int ti, bool* red, bool* ran_stop) {
  double fx = cos(yaw), fy = sin(yaw);
  double ext = len / 2.0;
  double tcx = cx - 0.8 * ext * fx, tcy = cy - 0.8 * ext * fy;
  double tfx = cx - (ext + 1.0) * fx, tfy = cy - (ext + 1.0) * fy;
  *red = false;
  for (int q = sc.sl_off; q < sc.sl_off + sc.n_sl; q++) {
    int signal = a.sl_idx[2 * q];
    if (signal < 0) continue;
    const double* l = a.sl + 5 * q;
    if (signal == mem[0] || dk_norm(l[0] - cx, l[1] - cy) > DK_RED_LIGHT_DISTANCE_M ||
        !dk_red(a, sc, signal, ti) || fx * l[2] + fy * l[3] <= 0.0)
      continue;
    double nx = -l[3], ny = l[2];
    double ax = l[0] - nx * l[4], ay = l[1] - ny * l[4];
    double bx = l[0] + nx * l[4], by = l[1] + ny * l[4];
    if (dk_segments_intersect(tcx, tcy, tfx, tfy, ax, ay, bx, by)) {
      *red = true;
      mem[0] = signal;
      break;
    }
  }
  *ran_stop = false;
  if (mem[1] < 0) {
    for (int q = sc.sl_off; q < sc.sl_off + sc.n_sl; q++) {
      int sign = a.sl_idx[2 * q + 1];
      if (sign >= 0 && dk_at_sign(a, sc, sign, cx, cy, fx, fy)) {
        mem[1] = sign;
        mem[2] = 0;
        break;
      }
    }
  } else {
    if (speed < DK_STOP_SPEED_MPS) mem[2] = 1;
    if (!dk_at_sign(a, sc, mem[1], cx, cy, fx, fy)) {
      if (!mem[2] && mem[1] != mem[3]) {
        *ran_stop = true;
        mem[3] = mem[1];
      }
      mem[1] = -1;
      mem[2] = 0;
    }
  }
}

// sim::idm::route_constraints: the speed limit in force and the nearest stop line that holds
// the vehicle (has_stop, stop_gap); `cleared` counts the rules whose stop signs are done.
DK_DEV void dk_route_constraints(const DkArgs& a, const DkScene& sc, int off, int n, double s,
                                 double half_len, double speed, int ti, u32* cleared,
                                 double* limit, bool* has_stop, double* stop_gap) {
  *limit = DK_INF;
  *has_stop = false;
  double front = s + half_len;
  for (int i = 0; i < n; i++) {
    int q = off + i;
    double at = a.rule_s[q];
    int line = a.rule_line[q];
    if (line < 0) {
      if (at <= s) *limit = a.rule_v[q];
      continue;
    }
    double gap = at - front;
    if (*has_stop || gap < -DK_STOP_PASSED_M || gap > DK_IDM_LOOKAHEAD_M) continue;
    int signal = a.sl_idx[2 * (sc.sl_off + line)];
    if (signal >= 0) {
      if (dk_red(a, sc, signal, ti)) {
        *has_stop = true;
        *stop_gap = gap;
      }
    } else if ((u32)i >= *cleared) {
      if (speed < DK_STOP_SPEED_MPS && gap < DK_STOP_CLEAR_M) {
        *cleared = (u32)i + 1;
      } else if (speed < DK_STOP_HOLD_MPS && gap < DK_STOP_CLEAR_M) {
        *has_stop = true;
        *stop_gap = 0.0;
      } else {
        *has_stop = true;
        *stop_gap = gap;
      }
    }
  }
}

// ---- the takeover the stepper decided (sim::stepper::CpuBackend::take_over) ----------------

DK_KERNEL void dk_takeover(const DkArgs a) {
  u32 r = DK_TID;
  if (r >= a.n || !a.takeover[r]) return;
  const double* p = a.pert + 4 * r;
  a.ego_controlled[r] = 1;
  a.ego_x[r] += p[0];
  a.ego_y[r] += p[1];
  a.ego_yaw[r] += p[2];
  a.ego_speed[r] = dk_max(a.ego_speed[r] * (1.0 + p[3]), 0.0);
}

// ---- evaluation: every metric of the step (sim::evaluation) ---------------------------------

DK_KERNEL void dk_evaluate(const DkArgs a) {
  u32 r = DK_TID;
  if (r >= a.n) return;
  a.present[r] = 0;
  if (!a.alive[r]) return;
  const DkScene& sc = a.scenes[a.scene_of[r]];
  i64 t = a.t_us[r];
  double ex = a.ego_x[r], ey = a.ego_y[r], eyaw = a.ego_yaw[r], espeed = a.ego_speed[r];
  double elen = sc.ego_len, ewid = sc.ego_wid;
  DkFrame ef = dk_frame(ex, ey, eyaw, elen, ewid);
  double ego_r = 0.5 * dk_norm(elen, ewid);
  double es = sin(eyaw), ec = cos(eyaw);
  double back = DK_REAR_AXLE_FRAC * elen;
  double rear_x = ex - ec * back, rear_y = ey - es * back;

  // Collisions (metrics::ego_step::step).
  bool c_front = false, c_lat = false, c_rear = false, c_any = false, new_at_fault = false;
  double min_dist = DK_INF;
  u32 present = 1;
  u32 a0 = a.agent_start[r], a1 = a.agent_start[r + 1];
  for (u32 k = a0; k < a1; k++) {
    int known = a.a_contact[k];
    a.a_contact[k] = -1;
    if (!a.a_valid[k]) continue;
    present += 1;
    double tx = a.a_x[k], ty = a.a_y[k];
    double tr = 0.5 * dk_norm(a.a_len[k], a.a_wid[k]);
    double centre_gap = dk_norm(tx - ex, ty - ey) - ego_r - tr;
    if (centre_gap >= min_dist) continue;
    DkFrame tf = dk_frame(tx, ty, a.a_yaw[k], a.a_len[k], a.a_wid[k]);
    double d = dk_box_distance(&ef, &tf);
    min_dist = dk_min(min_dist, d);
    if (d > 0.0 || !dk_overlaps(&ef, &tf)) continue;
    int cls = known;
    if (cls < 0) {
      cls = dk_classify(ex, ey, eyaw, elen, ewid, espeed, rear_x, rear_y, &tf, tx, ty,
                        a.a_speed[k], a.a_static[k] != 0);
      new_at_fault = new_at_fault || dk_at_fault(cls);
    }
    a.a_collided[k] = 1;
    a.a_contact[k] = cls;
    c_any = true;
    if (cls == DK_FRONT || cls == DK_STOPPED_TRACK_FRONT) c_front = true;
    else if (cls == DK_LATERAL || cls == DK_STOPPED_TRACK_SIDE) c_lat = true;
    else c_rear = true;
  }
  a.present[r] = present;

  // Time to collision (metrics::ttc::time_to_collision).
  double ttc;
  if (new_at_fault) {
    ttc = 0.0;
  } else if (espeed <= DK_TTC_STOPPED_MPS) {
    ttc = DK_INF;
  } else {
    double step = a.ttc_step_s, n = a.ttc_horizon_s / a.ttc_step_s;
    DkFrame ego_swept = dk_swept(ex, ey, eyaw, elen, ewid, espeed, step, n);
    bool any = false;
    for (u32 k = a0; k < a1; k++) {
      a.a_ttc[k] = 0;
      if (!a.a_valid[k] || a.a_collided[k]) continue;
      double tx = a.a_x[k], ty = a.a_y[k];
      if (!(dk_relative_cos(rear_x, rear_y, eyaw, tx, ty) > DK_AHEAD_COS)) continue;
      double sp = a.a_static[k] ? 0.0 : a.a_speed[k];
      DkFrame sw = dk_swept(tx, ty, a.a_yaw[k], a.a_len[k], a.a_wid[k], sp, step, n);
      if (!dk_overlaps(&ego_swept, &sw)) continue;
      a.a_ttc[k] = 1;
      any = true;
    }
    ttc = DK_INF;
    if (any) {
      double edx = ec * espeed * step, edy = es * espeed * step;
      double cnt = ceil((a.ttc_horizon_s - step) / step);
      u32 count = cnt > 0.0 ? (u32)cnt : 0u;
      for (u32 i = 0; i < count && ttc == DK_INF; i++) {
        double kk = (double)(i + 1);
        DkFrame e = dk_translated(&ef, edx * kk, edy * kk);
        for (u32 k = a0; k < a1; k++) {
          if (!a.a_ttc[k]) continue;
          double sp = a.a_static[k] ? 0.0 : a.a_speed[k];
          double ty = a.a_yaw[k];
          double ddx = cos(ty) * sp * step, ddy = sin(ty) * sp * step;
          DkFrame f = dk_frame(a.a_x[k], a.a_y[k], ty, a.a_len[k], a.a_wid[k]);
          DkFrame g = dk_translated(&f, ddx * kk, ddy * kk);
          if (dk_overlaps(&e, &g)) {
            ttc = step + (double)i * step;
            break;
          }
        }
      }
    }
  }

  // Offroad: every corner inside some drivable polygon, with the tolerance.
  double offroad = DK_NAN;
  if (sc.n_drv > 0) {
    double cx[4], cy[4];
    dk_corners(&ef, cx, cy);
    bool inside = true;
    for (int c = 0; c < 4 && inside; c++) {
      bool in_one = false;
      for (int q = sc.drv_off; q < sc.drv_off + sc.n_drv && !in_one; q++) {
        int poly = a.drivable[q];
        in_one = dk_contains(a, poly, cx[c], cy[c]) ||
                 dk_ring_distance(a, poly, cx[c], cy[c]) <= DK_OFFROAD_TOL_M;
      }
      inside = in_one;
    }
    offroad = inside ? 0.0 : 1.0;
  }

  // Path distances and progress.
  double dist_traj = DK_NAN, progress = DK_NAN;
  if (sc.gt_path >= 0) {
    double s;
    dist_traj = dk_poly_project(a, sc.gt_path, ex, ey, &s);
    progress = s - sc.gt_start_m;
  }
  double rx, ry, ryaw, rspeed;
  bool recorded = dk_sample(a, sc, 0, t, &rx, &ry, &ryaw, &rspeed);
  double dist_loc = recorded ? dk_norm(ex - rx, ey - ry) : DK_NAN;
  if (a.has_prev[r]) {
    a.traveled[r] += dk_norm(ex - a.prev[2 * r], ey - a.prev[2 * r + 1]);
  }
  a.has_prev[r] = 1;
  a.prev[2 * r] = ex;
  a.prev[2 * r + 1] = ey;
  double gt_traveled = DK_NAN;
  if (sc.gt_path >= 0 && recorded) {
    double s;
    dk_poly_project(a, sc.gt_path, rx, ry, &s);
    gt_traveled = s - sc.gt_start_m;
  }
  bool comfortable =
      dk_comfort_push(a.comfort + 5 * DK_COMFORT_WINDOW * r, a.comfort_n + 5 * r, espeed, eyaw, a.dt_s);
  double direction = sc.n_lanes > 0 ? dk_direction_push(a, sc, r, ex, ey, eyaw) : DK_NAN;
  // Speed over the lane's limit; red lights and stop signs run.
  double over_limit = DK_NAN;
  if (sc.n_lanes > 0 && sc.has_limits) {
    double ls, lh;
    int here = dk_locate(a, sc, ex, ey, eyaw, &ls, &lh);
    if (here >= 0) {
      double lim = a.lane_limit[sc.lane_off + here];
      if (lim == lim) over_limit = dk_max(espeed - lim, 0.0);
    }
  }
  bool ran_red = false, ran_stop = false;
  dk_rules_check(a, sc, a.rule_mem + 4 * r, ex, ey, eyaw, elen, espeed, dk_ts_index(a, sc, t),
                 &ran_red, &ran_stop);
  bool making_progress = true;
  if (!(progress != progress) && !(gt_traveled != gt_traveled) &&
      gt_traveled >= DK_MAKING_PROGRESS_MIN_EXPERT_M) {
    making_progress = progress / gt_traveled >= DK_MAKING_PROGRESS_RATIO;
  }
  double* m = a.metrics + (unsigned long long)DK_N_METRICS * r;
  m[DK_M_COLLISION_FRONT] = c_front ? 1.0 : 0.0;
  m[DK_M_COLLISION_LATERAL] = c_lat ? 1.0 : 0.0;
  m[DK_M_COLLISION_REAR] = c_rear ? 1.0 : 0.0;
  m[DK_M_COLLISION_ANY] = c_any ? 1.0 : 0.0;
  m[DK_M_OFFROAD] = offroad;
  m[DK_M_MIN_DISTANCE_TO_OBSTACLE_M] = min_dist;
  m[DK_M_DIST_TO_GT_TRAJECTORY] = dist_traj;
  m[DK_M_DIST_TO_GT_LOCATION] = dist_loc;
  m[DK_M_PROGRESS] = progress;
  m[DK_M_PROGRESS_REL_TO_TOTAL] = progress != progress ? DK_NAN : (sc.gt_len > 0.0 ? progress / sc.gt_len : 1.0);
  m[DK_M_DIST_TRAVELED_M] = a.traveled[r];
  m[DK_M_GT_DIST_TRAVELED_M] = gt_traveled;
  m[DK_M_PLAN_DEVIATION] = dk_norm(ex - a.plan_x[r], ey - a.plan_y[r]);
  m[DK_M_EVAL_RELEVANT] = t >= sc.driven_from_us ? 1.0 : 0.0;
  m[DK_M_TIME_TO_COLLISION_S] = ttc;
  m[DK_M_EGO_IS_COMFORTABLE] = comfortable ? 1.0 : 0.0;
  m[DK_M_DRIVING_DIRECTION_COMPLIANCE] = direction;
  m[DK_M_EGO_IS_MAKING_PROGRESS] = making_progress ? 1.0 : 0.0;
  m[DK_M_SPEED_LIMIT_VIOLATION] = over_limit;
  m[DK_M_RAN_RED_LIGHT] = sc.has_signals ? (ran_red ? 1.0 : 0.0) : DK_NAN;
  m[DK_M_RAN_STOP_SIGN] = sc.has_stop_signs ? (ran_stop ? 1.0 : 0.0) : DK_NAN;
}

// ---- IDM (sim::idm) -------------------------------------------------------------------------

DK_DEV double dk_idm_acceleration(double v, double v0, double headway, bool has_leader, double gap,
                                  double vl) {
  double free_term;
  if (v0 > 0.0) {
    double q = v / v0;
    double q2 = q * q;
    free_term = 1.0 - q2 * q2;
  } else {
    free_term = -1.0;
  }
  double acc;
  if (!has_leader) {
    acc = DK_IDM_ACCEL_MPS2 * free_term;
  } else {
    double dv = v - vl;
    double s_star = DK_IDM_MIN_GAP_M +
                    dk_max(v * headway + v * dv / (2.0 * sqrt(DK_IDM_ACCEL_MPS2 * DK_IDM_DECEL_MPS2)), 0.0);
    if (gap <= 0.0) {
      acc = -DK_IDM_MAX_BRAKE_MPS2;
    } else {
      double q = s_star / gap;
      acc = DK_IDM_ACCEL_MPS2 * (free_term - q * q);
    }
  }
  return dk_clamp(acc, -DK_IDM_MAX_BRAKE_MPS2, DK_IDM_ACCEL_MPS2);
}

struct DkBody {
  double x, y, c, s, speed, len, wid;
};

DK_DEV DkBody dk_body(double x, double y, double yaw, double speed, double len, double wid) {
  DkBody b;
  b.x = x; b.y = y;
  b.s = sin(yaw); b.c = cos(yaw);
  b.speed = speed; b.len = len; b.wid = wid;
  return b;
}

// One candidate of idm::leader: updates (has, gap, speed) when `o` is nearer ahead in my lane.
DK_DEV void dk_leader_consider(const DkBody* me, const DkBody* o, bool* has, double* best_gap,
                               double* best_speed) {
  double s = me->s, c = me->c;
  double dx = o->x - me->x, dy = o->y - me->y;
  double ahead = dx * c + dy * s;
  if (ahead <= 0.0 || ahead > DK_IDM_LOOKAHEAD_M) return;
  double dc = o->c * c + o->s * s;
  double ds = o->s * c - o->c * s;
  double half_along = o->len / 2.0 * fabs(dc) + o->wid / 2.0 * fabs(ds);
  double half_across = o->len / 2.0 * fabs(ds) + o->wid / 2.0 * fabs(dc);
  double side = -dx * s + dy * c;
  if (fabs(side) - half_across > me->wid / 2.0 + DK_IDM_LATERAL_MARGIN_M) return;
  double gap = ahead - me->len / 2.0 - half_along;
  if (!*has || gap < *best_gap) {
    *has = true;
    *best_gap = gap;
    *best_speed = o->speed * dc;
  }
}

// Agent k as a body, with the heading's cosine and sine dk_bodies computed this step (as the CPU
// computes each body's once per step).
DK_DEV DkBody dk_agent_body(const DkArgs& a, u32 k) {
  DkBody b;
  b.x = a.a_x[k]; b.y = a.a_y[k];
  b.c = a.a_cos[k]; b.s = a.a_sin[k];
  b.speed = a.a_speed[k]; b.len = a.a_len[k]; b.wid = a.a_wid[k];
  return b;
}

DK_KERNEL void dk_bodies(const DkArgs a) {
  u32 k = DK_TID;
  if (k >= a.n_agents || !a.alive[a.a_rollout[k]] || !a.a_valid[k]) return;
  a.a_sin[k] = sin(a.a_yaw[k]);
  a.a_cos[k] = cos(a.a_yaw[k]);
}

// ---- driver (sim::driver): constant velocity and IDM along the route ---------------------------

DK_DEV void dk_plan_constant_velocity(const DkArgs& a, u32 r) {
  double s = sin(a.ego_yaw[r]), c = cos(a.ego_yaw[r]);
  double v = a.ego_speed[r];
  for (int k = 0; k < DK_PLAN_POINTS; k++) {
    double d = v * a.dt_s * (double)(k + 1);
    a.plans_x[r * DK_PLAN_POINTS + k] = a.ego_x[r] + c * d;
    a.plans_y[r * DK_PLAN_POINTS + k] = a.ego_y[r] + s * d;
    a.plans_v[r * DK_PLAN_POINTS + k] = v;
  }
}

// driver_kind: 1 constant velocity, 2 IDM.
DK_KERNEL void dk_drive(const DkArgs a) {
  u32 r = DK_TID;
  if (r >= a.n) return;
  bool active = a.alive[r] && a.ego_controlled[r];
  a.plan_active[r] = active ? 1 : 0;
  if (!active) return;
  const DkScene& sc = a.scenes[a.scene_of[r]];
  if (a.driver_kind == 1 || sc.route < 0) {
    dk_plan_constant_velocity(a, r);
    return;
  }
  DkBody me = dk_body(a.ego_x[r], a.ego_y[r], a.ego_yaw[r], a.ego_speed[r], sc.ego_len, sc.ego_wid);
  bool has = false;
  double gap = 0.0, vl = 0.0;
  for (u32 k = a.agent_start[r]; k < a.agent_start[r + 1]; k++) {
    if (!a.a_valid[k]) continue;
    DkBody o = dk_agent_body(a, k);
    dk_leader_consider(&me, &o, &has, &gap, &vl);
  }
  double s;
  dk_poly_project(a, sc.route, me.x, me.y, &s);
  double limit, stop_gap = 0.0;
  bool has_stop;
  dk_route_constraints(a, sc, sc.route_rules_off, sc.route_rules_n, s, me.len / 2.0, me.speed,
                       dk_ts_index(a, sc, a.t_us[r]), a.ego_cleared + r, &limit, &has_stop,
                       &stop_gap);
  if (has_stop && (!has || stop_gap < gap)) {
    has = true;
    gap = stop_gap;
    vl = 0.0;
  }
  double acc = dk_idm_acceleration(me.speed, dk_min(sc.ego_top_speed, limit), DK_IDM_HEADWAY_S,
                                   has, gap, vl);
  double v = me.speed;
  for (int k = 0; k < DK_PLAN_POINTS; k++) {
    double v_next = dk_max(v + acc * a.dt_s, 0.0);
    s += (v + v_next) / 2.0 * a.dt_s;
    v = v_next;
    double px, py, h;
    dk_poly_at(a, sc.route, s, &px, &py, &h);
    a.plans_x[r * DK_PLAN_POINTS + k] = px;
    a.plans_y[r * DK_PLAN_POINTS + k] = py;
    a.plans_v[r * DK_PLAN_POINTS + k] = v;
  }
}

// ---- controller + vehicle model (sim::controller, sim::vehicle) -----------------------------

DK_KERNEL void dk_control(const DkArgs a) {
  u32 r = DK_TID;
  if (r >= a.n || !a.alive[r]) return;
  const DkScene& sc = a.scenes[a.scene_of[r]];
  if (!a.plan_active[r]) {
    a.plan_x[r] = DK_NAN;
    a.plan_y[r] = DK_NAN;
    double x, y, yaw, speed;
    if (dk_sample(a, sc, 0, a.t_us[r] + a.dt_us, &x, &y, &yaw, &speed)) {
      a.ego_x[r] = x;
      a.ego_y[r] = y;
      a.ego_yaw[r] = yaw;
      a.ego_speed[r] = speed;
    } else {
      a.alive[r] = 0;
    }
    return;
  }
  double x = a.ego_x[r], y = a.ego_y[r], yaw = a.ego_yaw[r], v = a.ego_speed[r];
  double s = sin(yaw), c = cos(yaw);
  double back = sc.wheelbase_m / 2.0;
  double rear_x = x - c * back, rear_y = y - s * back;
  double lookahead = dk_max(v * DK_LOOKAHEAD_S, DK_MIN_LOOKAHEAD_M);
  const double* px = a.plans_x + r * DK_PLAN_POINTS;
  const double* py = a.plans_y + r * DK_PLAN_POINTS;
  int k = DK_PLAN_POINTS - 1;
  for (int j = 0; j < DK_PLAN_POINTS; j++) {
    if (dk_norm(px[j] - rear_x, py[j] - rear_y) >= lookahead) {
      k = j;
      break;
    }
  }
  double dx = px[k] - rear_x, dy = py[k] - rear_y;
  double lx = dx * c + dy * s, ly = -dx * s + dy * c;
  double ld = dk_norm(lx, ly);
  double steer = ld > 1e-6 ? atan(2.0 * sc.wheelbase_m * (ly / ld) / ld) : 0.0;
  double accel = (a.plans_v[r * DK_PLAN_POINTS] - v) / a.dt_s;
  // vehicle::step
  double acc = dk_clamp(accel, -sc.max_decel_mps2, sc.max_accel_mps2);
  double delta = dk_clamp(steer, -sc.max_steer_rad, sc.max_steer_rad);
  double beta = atan(tan(delta) / 2.0);
  double nf = dk_max(ceil(a.dt_s / DK_VEHICLE_SUBSTEP_S), 1.0);
  int n = (int)nf;
  double h = a.dt_s / (double)n;
  for (int i = 0; i < n; i++) {
    double vv = v;
    x += vv * cos(yaw + beta) * h;
    y += vv * sin(yaw + beta) * h;
    yaw += vv / (sc.wheelbase_m / 2.0) * sin(beta) * h;
    v = dk_clamp(vv + acc * h, 0.0, sc.max_speed_mps);
  }
  a.ego_x[r] = x;
  a.ego_y[r] = y;
  a.ego_yaw[r] = yaw;
  a.ego_speed[r] = v;
  a.plan_x[r] = px[0];
  a.plan_y[r] = py[0];
}

// ---- traffic (sim::traffic) ------------------------------------------------------------------

// IDM accelerations of every agent from the state before anyone moves (one thread per agent).
DK_KERNEL void dk_traffic_accel(const DkArgs a) {
  u32 k = DK_TID;
  if (k >= a.n_agents) return;
  u32 r = a.a_rollout[k];
  a.a_accel[k] = 0.0;
  if (!a.alive[r] || !a.idm_traffic || !(a.a_idm[k] && a.a_valid[k])) return;
  const DkScene& sc = a.scenes[a.scene_of[r]];
  DkBody me = dk_agent_body(a, k);
  bool has = false;
  double gap = 0.0, vl = 0.0;
  for (u32 j = a.agent_start[r]; j < a.agent_start[r + 1]; j++) {
    if (j == k || !a.a_valid[j]) continue;
    DkBody o = dk_agent_body(a, j);
    dk_leader_consider(&me, &o, &has, &gap, &vl);
  }
  DkBody ego = dk_body(a.ego_x[r], a.ego_y[r], a.ego_yaw[r], a.ego_speed[r], sc.ego_len, sc.ego_wid);
  dk_leader_consider(&me, &ego, &has, &gap, &vl);
  double limit = DK_INF, stop_gap = 0.0;
  bool has_stop = false;
  int track = sc.path_off + (int)a.a_track[k];
  if (a.agent_path[track] >= 0) {
    dk_route_constraints(a, sc, a.agent_rules[2 * track], a.agent_rules[2 * track + 1], a.a_s[k],
                         me.len / 2.0, me.speed, dk_ts_index(a, sc, a.t_us[r]), a.a_cleared + k,
                         &limit, &has_stop, &stop_gap);
  }
  if (has_stop && (!has || stop_gap < gap)) {
    has = true;
    gap = stop_gap;
    vl = 0.0;
  }
  a.a_accel[k] = dk_idm_acceleration(me.speed, dk_min(a.a_v0[k], limit), a.a_headway[k], has,
                                     gap, vl);
}

// Moves every agent to t + dt: IDM along its path, or its recording.
DK_KERNEL void dk_traffic_move(const DkArgs a) {
  u32 k = DK_TID;
  if (k >= a.n_agents) return;
  u32 r = a.a_rollout[k];
  if (!a.alive[r]) return;
  const DkScene& sc = a.scenes[a.scene_of[r]];
  i64 t = a.t_us[r] + a.dt_us;
  if (!a.idm_traffic || !a.a_idm[k]) {
    double x, y, yaw, speed;
    if (dk_sample(a, sc, 1 + (int)a.a_track[k], t, &x, &y, &yaw, &speed)) {
      a.a_valid[k] = 1;
      a.a_x[k] = x;
      a.a_y[k] = y;
      a.a_yaw[k] = yaw;
      a.a_speed[k] = speed;
    } else {
      a.a_valid[k] = 0;
    }
    return;
  }
  int path = a.agent_path[sc.path_off + (int)a.a_track[k]];
  if (path < 0) return;
  double v = a.a_speed[k];
  double v_next = dk_max(v + a.a_accel[k] * a.dt_s, 0.0);
  a.a_s[k] += (v + v_next) / 2.0 * a.dt_s;
  a.a_speed[k] = v_next;
  double px, py, seg_heading;
  dk_poly_at(a, path, a.a_s[k], &px, &py, &seg_heading);
  a.a_x[k] = px;
  a.a_y[k] = py;
  double qx, qy, qh;
  dk_poly_at(a, path, a.a_s[k] + DK_HEADING_LOOKAHEAD_M, &qx, &qy, &qh);
  double dx = qx - px, dy = qy - py;
  a.a_yaw[k] = hypot(dx, dy) > 0.1 ? atan2(dy, dx) : seg_heading;
}

// Every alive rollout's clock moves on by one control step.
DK_KERNEL void dk_clock(const DkArgs a) {
  u32 r = DK_TID;
  if (r >= a.n || !a.alive[r]) return;
  a.t_us[r] += a.dt_us;
}
