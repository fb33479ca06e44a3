// Geometry, as src/geometry.rs does it (same operations in the same order, so the emulator
// reproduces the CPU backend's bits and the GPU stays within rounding of it).

struct DkFrame {
  double cx, cy, ax, ay, bx, by, hl, hw;  // centre, along, across, half length, half width
};

DK_DEV DkFrame dk_frame(double x, double y, double yaw, double len, double wid) {
  DkFrame f;
  double s = sin(yaw), c = cos(yaw);
  f.cx = x; f.cy = y;
  f.ax = c; f.ay = s;
  f.bx = -s; f.by = c;
  f.hl = len / 2.0; f.hw = wid / 2.0;
  return f;
}

DK_DEV double dk_dot(double ax, double ay, double bx, double by) { return ax * bx + ay * by; }

DK_DEV double dk_radius_on(const DkFrame* f, double x, double y) {
  return f->hl * fabs(dk_dot(f->ax, f->ay, x, y)) + f->hw * fabs(dk_dot(f->bx, f->by, x, y));
}

// BoxFrame::overlaps: separating axes, touching boxes are apart.
DK_DEV bool dk_overlaps(const DkFrame* a, const DkFrame* b) {
  double dx = b->cx - a->cx, dy = b->cy - a->cy;
  double eps = 1e-9 * (1.0 + dk_max(fabs(a->cx), fabs(a->cy)));
  double axes[8] = {a->ax, a->ay, a->bx, a->by, b->ax, b->ay, b->bx, b->by};
  for (int k = 0; k < 4; k++) {
    double x = axes[2 * k], y = axes[2 * k + 1];
    double gap = fabs(dk_dot(dx, dy, x, y)) - (dk_radius_on(a, x, y) + dk_radius_on(b, x, y));
    if (gap >= -eps) return false;
  }
  return true;
}

DK_DEV DkFrame dk_translated(const DkFrame* f, double dx, double dy) {
  DkFrame g = *f;
  g.cx = f->cx + dx;
  g.cy = f->cy + dy;
  return g;
}

// Corners counter-clockwise from front-left: xs[4], ys[4].
DK_DEV void dk_corners(const DkFrame* f, double* xs, double* ys) {
  double ls[4] = {f->hl, -f->hl, -f->hl, f->hl};
  double ws[4] = {f->hw, f->hw, -f->hw, -f->hw};
  for (int k = 0; k < 4; k++) {
    xs[k] = f->cx + f->ax * ls[k] + f->bx * ws[k];
    ys[k] = f->cy + f->ay * ls[k] + f->by * ws[k];
  }
}

DK_DEV double dk_segment_distance2(double ax, double ay, double bx, double by, double px, double py) {
  double abx = bx - ax, aby = by - ay;
  double apx = px - ax, apy = py - ay;
  double len2 = dk_dot(abx, aby, abx, aby);
  double t = len2 > 0.0 ? dk_clamp(dk_dot(apx, apy, abx, aby) / len2, 0.0, 1.0) : 0.0;
  double dx = apx - abx * t, dy = apy - aby * t;
  return dx * dx + dy * dy;
}

// geometry::segment_distance: (distance, t).
DK_DEV double dk_segment_distance(double ax, double ay, double bx, double by, double px, double py,
                                  double* t_out) {
  double abx = bx - ax, aby = by - ay;
  double len2 = dk_dot(abx, aby, abx, aby);
  double t = len2 > 0.0 ? dk_clamp(dk_dot(px - ax, py - ay, abx, aby) / len2, 0.0, 1.0) : 0.0;
  double qx = ax + abx * t, qy = ay + aby * t;
  *t_out = t;
  return dk_norm(px - qx, py - qy);
}

DK_DEV double dk_box_distance(const DkFrame* a, const DkFrame* b) {
  if (dk_overlaps(a, b)) return 0.0;
  double ax[4], ay[4], bx[4], by[4];
  dk_corners(a, ax, ay);
  dk_corners(b, bx, by);
  double best_ab = DK_INF, best_ba = DK_INF;
  for (int c = 0; c < 4; c++) {
    double d = DK_INF;
    for (int i = 0; i < 4; i++)
      d = dk_min(d, dk_segment_distance2(bx[i], by[i], bx[(i + 1) % 4], by[(i + 1) % 4], ax[c], ay[c]));
    best_ab = dk_min(best_ab, d);
  }
  for (int c = 0; c < 4; c++) {
    double d = DK_INF;
    for (int i = 0; i < 4; i++)
      d = dk_min(d, dk_segment_distance2(ax[i], ay[i], ax[(i + 1) % 4], ay[(i + 1) % 4], bx[c], by[c]));
    best_ba = dk_min(best_ba, d);
  }
  return sqrt(dk_min(best_ab, best_ba));
}
