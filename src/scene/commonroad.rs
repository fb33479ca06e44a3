//! CommonRoad XML importer (2018b and 2020a): lanelets → lanes and drivable area, obstacles with
//! their rectangles and per-step states → agents, planning problem → ego.
//!
//! CommonRoad scenarios have no recorded ego: the planning problem's vehicle was taken out of the
//! traffic. drivekit's ego reference is **the route to the goal at the initial speed**: the ego
//! starts at the planning problem's initial state on the lanelet that contains it (best heading
//! match; else the nearest centerline), follows the lanelet graph to the goal lanelet (breadth-
//! first; without a goal lanelet, the first successor each time) and moves along the joined
//! centerlines at its initial velocity, stopping at the route's end. The ego box is CommonRoad's
//! vehicle model 2 (BMW 320i, 4.508 × 1.610 m). Values given as intervals take their midpoint and uncertain positions (rectangle, circle,
//! polygon) their centre;
//! static obstacles are valid at every step; each lanelet's polygon (left bound, then right bound
//! reversed) is part of the drivable area; centerlines are the boundaries' midline.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::{Path, PathBuf};

use roxmltree::{Document, Node};

use super::av2::midline;
use super::{AgentClass, Lane, Map, Point, Polygon, Scene, SceneError, Track};
use crate::geometry::{self, Polyline};

/// Ego box (length, width, height): CommonRoad vehicle model 2, BMW 320i.
pub const EGO_SIZE: (f64, f64, f64) = (4.508, 1.610, 1.4);

/// Why a CommonRoad file could not be imported; each variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum CommonRoadError {
    /// File not readable.
    #[error("{file}: {source}")]
    Io {
        /// the file
        file: PathBuf,
        /// the cause
        source: std::io::Error,
    },
    /// Malformed XML or a missing element.
    #[error("{file}: {message}")]
    Format {
        /// the file
        file: PathBuf,
        /// what is wrong (element, line)
        message: String,
    },
    /// The result does not validate.
    #[error(transparent)]
    Scene(#[from] SceneError),
}

fn child<'a, 'i>(n: Node<'a, 'i>, name: &str) -> Option<Node<'a, 'i>> {
    n.children().find(|c| c.has_tag_name(name))
}

fn text_f64(n: Node) -> Option<f64> {
    n.text()?.trim().parse().ok()
}

/// `<exact>v</exact>` or the midpoint of `<intervalStart>`/`<intervalEnd>`.
fn value(n: Node) -> Option<f64> {
    if let Some(e) = child(n, "exact") {
        return text_f64(e);
    }
    let (a, b) = (
        text_f64(child(n, "intervalStart")?)?,
        text_f64(child(n, "intervalEnd")?)?,
    );
    Some((a + b) / 2.0)
}

fn points(n: Node) -> Vec<Point> {
    n.children()
        .filter(|c| c.has_tag_name("point"))
        .filter_map(|p| Some([text_f64(child(p, "x")?)?, text_f64(child(p, "y")?)?]))
        .collect()
}

fn refs(n: Node, tag: &str) -> Vec<i64> {
    n.children()
        .filter(|c| c.has_tag_name(tag))
        .filter_map(|c| c.attribute("ref")?.parse().ok())
        .collect()
}

/// A position: an exact `<point>`, or the centre of an uncertain `<rectangle>`/`<circle>`, or
/// the vertex mean of a `<polygon>`.
fn position(pos: Node) -> Option<Point> {
    if let Some(p) = points(pos).first() {
        return Some(*p);
    }
    for shape in ["rectangle", "circle"] {
        if let Some(c) = child(pos, shape).and_then(|s| child(s, "center")) {
            return Some([text_f64(child(c, "x")?)?, text_f64(child(c, "y")?)?]);
        }
    }
    let poly = points(child(pos, "polygon")?);
    (!poly.is_empty()).then(|| {
        let n = poly.len() as f64;
        [
            poly.iter().map(|p| p[0]).sum::<f64>() / n,
            poly.iter().map(|p| p[1]).sum::<f64>() / n,
        ]
    })
}

/// A state: (time step, x, y, orientation, velocity).
type State = (i64, f64, f64, f64, f64);

/// An obstacle as read, before it is laid on the scene clock.
struct Obstacle {
    id: String,
    class: AgentClass,
    length: f64,
    width: f64,
    states: Vec<State>,
    is_static: bool,
}

fn state(n: Node) -> Option<State> {
    let pos = child(n, "position")?;
    let p = position(pos)?;
    let time = value(child(n, "time")?)?.round() as i64;
    let yaw = child(n, "orientation").and_then(value).unwrap_or(0.0);
    let v = child(n, "velocity").and_then(value).unwrap_or(0.0);
    Some((time, p[0], p[1], yaw, v))
}

fn class_of(kind: &str) -> AgentClass {
    match kind {
        "car" | "truck" | "bus" | "priorityVehicle" | "taxi" | "train" => AgentClass::Vehicle,
        "pedestrian" => AgentClass::Pedestrian,
        "bicycle" | "motorcycle" => AgentClass::Cyclist,
        "parkedVehicle" | "constructionZone" | "roadBoundary" | "building" | "pillar"
        | "median_strip" => AgentClass::Static,
        _ => AgentClass::Other,
    }
}

/// Imports one CommonRoad XML file.
pub fn import(path: &Path) -> Result<Scene, CommonRoadError> {
    let text = std::fs::read_to_string(path).map_err(|e| CommonRoadError::Io {
        file: path.to_path_buf(),
        source: e,
    })?;
    let bad = |message: String| CommonRoadError::Format {
        file: path.to_path_buf(),
        message,
    };
    let doc = Document::parse(&text).map_err(|e| bad(format!("malformed XML: {e}")))?;
    let root = doc.root_element();
    if !root.has_tag_name("commonRoad") {
        return Err(bad(format!(
            "root element is <{}>, expected <commonRoad>",
            root.tag_name().name()
        )));
    }
    let dt: f64 = root
        .attribute("timeStepSize")
        .and_then(|s| s.parse().ok())
        .unwrap_or(0.1);
    let scene_id = root
        .attribute("benchmarkID")
        .map(str::to_string)
        .unwrap_or_else(|| {
            path.file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default()
        });

    // Lanelets.
    let mut lanes = Vec::new();
    let mut drivable_areas = Vec::new();
    let mut crosswalks = Vec::new();
    for l in root.children().filter(|c| c.has_tag_name("lanelet")) {
        let id: i64 = l
            .attribute("id")
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| bad("a <lanelet> without a numeric id".into()))?;
        let left = child(l, "leftBound").map(points).unwrap_or_default();
        let right = child(l, "rightBound").map(points).unwrap_or_default();
        if left.len() < 2 || right.len() < 2 {
            return Err(bad(format!(
                "lanelet {id} has a bound with fewer than 2 points"
            )));
        }
        let lane_type = l
            .children()
            .filter(|c| c.has_tag_name("laneletType"))
            .filter_map(|c| c.text())
            .collect::<Vec<_>>()
            .join(",");
        let mut polygon = left.clone();
        polygon.extend(right.iter().rev());
        if lane_type.contains("crosswalk") {
            crosswalks.push(Polygon {
                id,
                points: polygon,
            });
        } else {
            drivable_areas.push(Polygon {
                id,
                points: polygon,
            });
        }
        lanes.push(Lane {
            speed_limit_mps: None,
            id,
            centerline: midline(&left, &right),
            predecessors: refs(l, "predecessor"),
            successors: refs(l, "successor"),
            left_neighbor: refs(l, "adjacentLeft").first().copied(),
            right_neighbor: refs(l, "adjacentRight").first().copied(),
            left_boundary: left,
            right_boundary: right,
            is_intersection: false,
            lane_type,
        });
    }
    if lanes.is_empty() {
        return Err(bad("no <lanelet>: a scene needs a road".into()));
    }
    lanes.sort_by_key(|l| l.id);

    // Obstacles: 2018b <obstacle><role>…</role>, 2020a <dynamicObstacle>/<staticObstacle>.
    let mut raw: Vec<Obstacle> = Vec::new();
    for o in root.children().filter(|c| c.is_element()) {
        let tag = o.tag_name().name();
        let is_static = match tag {
            "dynamicObstacle" => false,
            "staticObstacle" => true,
            "obstacle" => child(o, "role").and_then(|r| r.text()).map(str::trim) == Some("static"),
            _ => continue,
        };
        let id = o.attribute("id").unwrap_or("?").to_string();
        let kind = child(o, "type")
            .and_then(|t| t.text())
            .unwrap_or("unknown")
            .trim()
            .to_string();
        let rect = child(o, "shape").and_then(|s| child(s, "rectangle"));
        let Some((length, width)) = rect.and_then(|r| {
            Some((
                text_f64(child(r, "length")?)?,
                text_f64(child(r, "width")?)?,
            ))
        }) else {
            continue; // circles and polygons are not boxes; left out
        };
        let mut states = Vec::new();
        if let Some(s) = child(o, "initialState").and_then(state) {
            states.push(s);
        }
        if let Some(t) = child(o, "trajectory") {
            states.extend(
                t.children()
                    .filter(|c| c.has_tag_name("state"))
                    .filter_map(state),
            );
        }
        if states.is_empty() {
            return Err(bad(format!("obstacle {id} has no readable state")));
        }
        raw.push(Obstacle {
            id: format!("{tag}-{id}"),
            class: class_of(&kind),
            length,
            width,
            states,
            is_static,
        });
    }

    // Planning problem → ego start and goal.
    let pp = root
        .children()
        .find(|c| c.has_tag_name("planningProblem"))
        .ok_or_else(|| bad("no <planningProblem>: the ego cannot be placed".into()))?;
    let init = child(pp, "initialState")
        .and_then(state)
        .ok_or_else(|| bad("planningProblem without a readable initialState".into()))?;
    let goal = child(pp, "goalState");
    let goal_lanelet = goal
        .and_then(|g| child(g, "position"))
        .map(|p| refs(p, "lanelet"))
        .and_then(|v| v.first().copied());
    let goal_end = goal
        .and_then(|g| child(g, "time"))
        .and_then(|t| text_f64(child(t, "intervalEnd")?))
        .unwrap_or(0.0) as i64;
    let last_step = raw
        .iter()
        .flat_map(|r| r.states.iter().map(|s| s.0))
        .chain([goal_end, init.0 + 1])
        .max()
        .unwrap_or(1);
    let first_step = init.0.min(
        raw.iter()
            .flat_map(|r| r.states.iter().map(|s| s.0))
            .min()
            .unwrap_or(init.0),
    );
    let steps = last_step - first_step + 1;
    if !(1..=MAX_STEPS).contains(&steps) {
        return Err(bad(format!(
            "time steps {first_step}…{last_step}: more than {MAX_STEPS} steps (or none); is a time step wrong?"
        )));
    }
    let n = steps as usize;

    let ego = route_ego(&lanes, init, goal_lanelet, first_step, n, dt).map_err(bad)?;
    let mut agents: BTreeMap<String, Track> = BTreeMap::new();
    for o in raw {
        let mut t = Track::empty(o.id.clone(), o.class, (o.length, o.width, 1.5), n);
        for &(step, x, y, yaw, v) in &o.states {
            let range = if o.is_static {
                0..n
            } else {
                let i = (step - first_step) as usize;
                if i >= n {
                    continue;
                }
                i..i + 1
            };
            for i in range {
                t.valid[i] = true;
                t.x[i] = x;
                t.y[i] = y;
                t.yaw[i] = yaw;
                t.vx[i] = v * yaw.cos();
                t.vy[i] = v * yaw.sin();
            }
        }
        agents.insert(o.id, t);
    }
    drivable_areas.sort_by_key(|p| p.id);
    let scene = Scene {
        signals: Vec::new(),
        tags: Vec::new(),
        meta: Default::default(),
        scene_id,
        source: format!(
            "CommonRoad scenario (BSD-3-Clause, TUM; source: {}): {}",
            root.attribute("source").unwrap_or("unknown"),
            path.file_name()
                .map(|f| f.to_string_lossy().into_owned())
                .unwrap_or_default()
        ),
        timestamps_us: (0..n as i64)
            .map(|k| ((first_step + k) as f64 * dt * 1e6).round() as i64)
            .collect(),
        map: Map {
            road_lines: Vec::new(),
            road_edges: Vec::new(),
            speed_bumps: Vec::new(),
            driveways: Vec::new(),
            stop_signs: Vec::new(),
            lanes,
            drivable_areas,
            crosswalks,
        },
        ego,
        agents: agents.into_values().collect(),
    };
    scene.validate()?;
    Ok(scene)
}

/// Most time steps a scenario may span (a day at 10 Hz): more is a broken time field.
const MAX_STEPS: i64 = 864_000;

/// The ego's reference: the route from the initial state to the goal lanelet at constant speed;
/// an error when no lanelet has a usable centerline there.
fn route_ego(
    lanes: &[Lane],
    init: State,
    goal: Option<i64>,
    first_step: i64,
    n: usize,
    dt: f64,
) -> Result<Track, String> {
    let (t0, x0, y0, yaw0, v0) = init;
    let by_id: HashMap<i64, &Lane> = lanes.iter().map(|l| (l.id, l)).collect();
    // Start lanelet: containing the point with the best heading match, else nearest centerline.
    let heading_err = |l: &Lane| -> f64 {
        let Some(c) = Polyline::new(l.centerline.clone()) else {
            return f64::INFINITY;
        };
        let h = c.at(c.project([x0, y0]).1).1;
        let e = (h - yaw0).rem_euclid(std::f64::consts::TAU);
        e.min(std::f64::consts::TAU - e)
    };
    let polygon = |l: &Lane| {
        let mut p = l.left_boundary.clone();
        p.extend(l.right_boundary.iter().rev());
        p
    };
    let centre_dist = |l: &Lane| {
        geometry::project_on_polyline(&l.centerline, [x0, y0]).map_or(f64::INFINITY, |p| p.0)
    };
    let containing: Vec<&Lane> = lanes
        .iter()
        .filter(|l| geometry::contains(&polygon(l), [x0, y0]))
        .collect();
    let start = if containing.is_empty() {
        lanes
            .iter()
            .min_by(|a, b| centre_dist(a).total_cmp(&centre_dist(b)))
    } else {
        containing
            .into_iter()
            .min_by(|a, b| heading_err(a).total_cmp(&heading_err(b)))
    }
    .ok_or("no lanelet to place the ego on")?;
    let route = route_to(&by_id, start.id, goal);
    let mut points: Vec<Point> = Vec::new();
    for id in &route {
        for &p in &by_id[id].centerline {
            if points.last() != Some(&p) {
                points.push(p);
            }
        }
    }
    let path = Polyline::new(points).ok_or_else(|| {
        format!(
            "lanelet {}: the ego's route has a degenerate centerline (fewer than two distinct points)",
            start.id
        )
    })?;
    let s0 = path.project([x0, y0]).1;
    let mut ego = Track::empty("EGO".into(), AgentClass::Vehicle, EGO_SIZE, n);
    for k in 0..n {
        let step = first_step + k as i64;
        if step < t0 {
            continue;
        }
        let s = s0 + v0 * (step - t0) as f64 * dt;
        let (p, h) = path.at(s);
        let moving = s < path.length();
        ego.valid[k] = true;
        ego.x[k] = p[0];
        ego.y[k] = p[1];
        ego.yaw[k] = h;
        ego.vx[k] = if moving { v0 * h.cos() } else { 0.0 };
        ego.vy[k] = if moving { v0 * h.sin() } else { 0.0 };
    }
    Ok(ego)
}

/// Lanelet ids from `start` to `goal` (breadth-first over successors); without a reachable goal,
/// the first unvisited successor each time.
fn route_to(by_id: &HashMap<i64, &Lane>, start: i64, goal: Option<i64>) -> Vec<i64> {
    if let Some(g) = goal {
        let mut prev: HashMap<i64, i64> = HashMap::new();
        let mut queue = VecDeque::from([start]);
        while let Some(id) = queue.pop_front() {
            if id == g {
                let mut path = vec![id];
                while let Some(&p) = prev.get(path.last().expect("non-empty")) {
                    path.push(p);
                }
                path.reverse();
                return path;
            }
            for &s in by_id
                .get(&id)
                .map(|l| l.successors.as_slice())
                .unwrap_or_default()
            {
                if s != start && by_id.contains_key(&s) && !prev.contains_key(&s) {
                    prev.insert(s, id);
                    queue.push_back(s);
                }
            }
        }
    }
    let mut route = vec![start];
    while let Some(&next) = by_id[route.last().expect("non-empty")]
        .successors
        .iter()
        .find(|s| by_id.contains_key(s) && !route.contains(s))
    {
        route.push(next);
    }
    route
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scenario(left: &str, right: &str, goal_end: &str) -> String {
        let pts = |p: &str| {
            p.split(';')
                .map(|xy| {
                    let (x, y) = xy.split_once(',').unwrap();
                    format!("<point><x>{x}</x><y>{y}</y></point>")
                })
                .collect::<String>()
        };
        format!(
            r#"<commonRoad timeStepSize="0.1" benchmarkID="T-1">
  <lanelet id="1"><leftBound>{}</leftBound><rightBound>{}</rightBound></lanelet>
  <planningProblem id="9"><initialState>
    <position><point><x>0</x><y>1</y></point></position>
    <orientation><exact>0</exact></orientation><time><exact>0</exact></time>
    <velocity><exact>5</exact></velocity>
  </initialState>
  <goalState><time><intervalStart>0</intervalStart><intervalEnd>{goal_end}</intervalEnd></time></goalState>
  </planningProblem>
</commonRoad>"#,
            pts(left),
            pts(right)
        )
    }

    fn import_text(text: &str) -> Result<Scene, CommonRoadError> {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("T-1.xml");
        std::fs::write(&p, text).unwrap();
        import(&p)
    }

    #[test]
    fn r15_a_degenerate_lanelet_is_an_error_not_a_panic() {
        // Both bounds repeat one point: the centerline has a single distinct point.
        let e = import_text(&scenario("0,2;0,2", "0,0;0,0", "10"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("T-1.xml") && e.contains("degenerate centerline"),
            "{e}"
        );
        // A sane lanelet imports.
        let s = import_text(&scenario("0,2;50,2", "0,0;50,0", "10")).unwrap();
        assert!(s.ego.n_valid() > 0);
        // A time step far out is named instead of allocating without bound.
        let e = import_text(&scenario("0,2;50,2", "0,0;50,0", "900000000"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("more than 864000 steps"), "{e}");
    }
}
