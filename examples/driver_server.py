#!/usr/bin/env python3
"""A minimal driving policy served over AlpaSim's egodriver.EgodriverService gRPC contract.

drivekit evaluates it with ``simulate run --driver external --driver-address HOST:PORT``; AlpaSim
itself could drive it too. The policy ("route keeper") follows the route the runtime submits,
at a cruise speed, easing off to stop where the route ends and holding still without one. It is
here to show what a policy server has to do:

* ``start_session`` / ``close_session``: keep per-session state (keyed by ``session_uuid``);
* ``submit_egomotion_observation``: the rig pose in the runtime's local frame (x, y, heading) and
  its velocity in the rig frame;
* ``submit_route``: waypoints ahead, in the rig frame at that time (x forward, y left);
* ``submit_image_observation``: encoded frames of the cameras declared at ``start_session``
  (drivekit sends its heading-up bird's-eye view as PNG);
* ``drive``: return a trajectory of rig poses in the local frame, timestamped from
  ``time_now_us`` on.

The message classes are the contract's: this script takes them from the ``carla-driver-interface``
package (``pip install carla-driver-interface``, Apache-2.0), which vendors AlpaSim's .proto files
unchanged; compiling drivekit's ``proto/alpasim_grpc/v0`` with ``grpcio-tools`` gives the same.

Flags for testing a runtime's failure handling: ``--fail-scene ID`` answers every drive of sessions
of that scene with an error, ``--delay-ms N`` sleeps before each drive answer (with
``--slow-one-in K``, only for the sessions whose SHA-256 of ``session_uuid`` is a multiple of K: one
rollout in K, the same ones every run), ``--die-after N`` exits the process after N drive calls.
``--session-log FILE`` appends one JSON line per closed session (its id, whether it was slow, its
drive calls, and when it started and last got a drive answer, in seconds of the server's clock).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import sys
import threading
import time
from concurrent import futures

import grpc

try:
    from carla_driver_interface._proto import common_pb2, egodriver_pb2
except ImportError:  # pragma: no cover - a clear message instead of a traceback
    sys.exit("driver_server.py needs the contract's message classes: pip install carla-driver-interface")

SERVICE = "egodriver.EgodriverService"


def quat_to_yaw(q) -> float:
    return 2.0 * math.atan2(q.z, q.w)


def pose(x: float, y: float, yaw: float):
    return common_pb2.Pose(
        vec=common_pb2.Vec3(x=x, y=y, z=0.0),
        quat=common_pb2.Quat(w=math.cos(yaw / 2.0), x=0.0, y=0.0, z=math.sin(yaw / 2.0)),
    )


class Session:
    def __init__(self, scene_id: str) -> None:
        self.scene_id = scene_id
        self.x = self.y = self.yaw = 0.0
        self.speed = 0.0
        self.route: list[tuple[float, float]] = []  # rig frame at the route's timestamp
        self.route_pose = (0.0, 0.0, 0.0)  # rig pose (local frame) the route is relative to
        self.cameras: list[str] = []  # logical ids declared at start_session
        self.images = 0
        self.slow = False  # its drive answers wait --delay-ms
        self.started_s = time.time()
        self.last_drive_s = 0.0
        self.drives = 0


class RouteKeeper:
    """The policy and the session bookkeeping."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.sessions: dict[str, Session] = {}
        self.lock = threading.Lock()
        self.drives = 0

    # -- contract ------------------------------------------------------------------------------
    def get_version(self, request, context):
        return common_pb2.VersionId(
            version_id="drivekit-example-route-keeper",
            git_hash="",
            grpc_api_version=common_pb2.VersionId.APIVersion(major=0, minor=1, patch=0),
        )

    def start_session(self, request, context):
        scene = request.debug_info.scene_id if request.HasField("debug_info") else ""
        session = Session(scene)
        session.cameras = [c.logical_id for c in request.rollout_spec.vehicle.available_cameras]
        k = self.args.slow_one_in
        digest = hashlib.sha256(request.session_uuid.encode()).digest()
        session.slow = k <= 1 or int.from_bytes(digest[:8], "big") % k == 0
        with self.lock:
            self.sessions[request.session_uuid] = session
        return common_pb2.SessionRequestStatus()

    def close_session(self, request, context):
        with self.lock:
            s = self.sessions.pop(request.session_uuid, None)
            if s is not None and self.args.session_log:
                line = {
                    "session": request.session_uuid,
                    "slow": bool(self.args.delay_ms) and s.slow,
                    "drives": s.drives,
                    "started_s": s.started_s,
                    "last_drive_s": s.last_drive_s,
                }
                with open(self.args.session_log, "a") as f:
                    f.write(json.dumps(line) + "\n")
        return common_pb2.Empty()

    def submit_egomotion_observation(self, request, context):
        s = self._session(request.session_uuid, context)
        if request.trajectory.poses:
            p = request.trajectory.poses[-1].pose
            s.x, s.y, s.yaw = p.vec.x, p.vec.y, quat_to_yaw(p.quat)
        if request.dynamic_states:
            v = request.dynamic_states[-1].linear_velocity
            s.speed = math.hypot(v.x, v.y)
        return common_pb2.Empty()

    def submit_route(self, request, context):
        s = self._session(request.session_uuid, context)
        s.route = [(w.x, w.y) for w in request.route.waypoints]
        s.route_pose = (s.x, s.y, s.yaw)
        return common_pb2.Empty()

    def submit_recording_ground_truth(self, request, context):
        self._session(request.session_uuid, context)
        return common_pb2.Empty()

    def submit_image_observation(self, request, context):
        s = self._session(request.session_uuid, context)
        image = request.camera_image
        if image.logical_id not in s.cameras:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"undeclared camera {image.logical_id}")
        if not image.image_bytes.startswith(b"\x89PNG") and not image.image_bytes.startswith(b"\xff\xd8"):
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "camera image is neither PNG nor JPEG")
        s.images += 1
        return common_pb2.Empty()

    def drive(self, request, context):
        s = self._session(request.session_uuid, context)
        with self.lock:
            self.drives += 1
            drives = self.drives
        if self.args.die_after and drives > self.args.die_after:
            os._exit(3)
        if self.args.delay_ms and s.slow:
            time.sleep(self.args.delay_ms / 1000.0)
        if self.args.require_camera and s.images == 0:
            context.abort(grpc.StatusCode.FAILED_PRECONDITION, "no camera image before drive")
        if self.args.fail_scene and s.scene_id == self.args.fail_scene:
            context.abort(grpc.StatusCode.INTERNAL, f"policy refuses scene {s.scene_id}")
        response = egodriver_pb2.DriveResponse(trajectory=self.plan(s, request.time_now_us))
        s.drives += 1
        s.last_drive_s = time.time()
        return response

    # -- the policy ----------------------------------------------------------------------------
    def plan(self, s: Session, now_us: int):
        step_s, n = 0.1, 30
        traj = common_pb2.Trajectory()
        traj.poses.add(pose=pose(s.x, s.y, s.yaw), timestamp_us=now_us)
        if len(s.route) < 2:
            return traj  # no route: a one-pose plan, which runtimes read as "hold"
        # Route arc lengths (rig frame of the route's pose); where the rig is now along it.
        pts = s.route
        arc = [0.0]
        for a, b in zip(pts, pts[1:]):
            arc.append(arc[-1] + math.hypot(b[0] - a[0], b[1] - a[1]))
        rx, ry, ryaw = s.route_pose

        def at(dist: float) -> tuple[float, float, float]:
            dist = max(0.0, min(dist, arc[-1]))
            i = max(1, next((k for k, d in enumerate(arc) if d >= dist), len(arc) - 1))
            a, b = pts[i - 1], pts[i]
            seg = arc[i] - arc[i - 1]
            f = (dist - arc[i - 1]) / seg if seg > 0 else 0.0
            lx, ly = a[0] + (b[0] - a[0]) * f, a[1] + (b[1] - a[1]) * f
            heading = math.atan2(b[1] - a[1], b[0] - a[0])
            c, sn = math.cos(ryaw), math.sin(ryaw)
            return rx + c * lx - sn * ly, ry + sn * lx + c * ly, ryaw + heading

        v, dist = s.speed, 0.0
        for k in range(1, n + 1):
            remaining = arc[-1] - dist
            target = min(self.args.cruise_speed, math.sqrt(2.0 * 3.0 * max(0.0, remaining)))
            v = min(v + 1.5 * step_s, target) if v < target else max(target, v - 4.0 * step_s)
            dist += v * step_s
            x, y, yaw = at(dist)
            traj.poses.add(pose=pose(x, y, yaw), timestamp_us=now_us + int(k * step_s * 1e6))
        return traj

    def _session(self, uuid: str, context) -> Session:
        with self.lock:
            s = self.sessions.get(uuid)
        if s is None:
            context.abort(grpc.StatusCode.NOT_FOUND, f"no session {uuid}: call start_session first")
        return s


def serve(args: argparse.Namespace) -> None:
    policy = RouteKeeper(args)
    e, c = egodriver_pb2, common_pb2
    methods = {
        "get_version": (policy.get_version, c.Empty),
        "start_session": (policy.start_session, e.DriveSessionRequest),
        "close_session": (policy.close_session, e.DriveSessionCloseRequest),
        "submit_egomotion_observation": (policy.submit_egomotion_observation, e.RolloutEgoTrajectory),
        "submit_route": (policy.submit_route, e.RouteRequest),
        "submit_recording_ground_truth": (policy.submit_recording_ground_truth, e.GroundTruthRequest),
        "submit_image_observation": (policy.submit_image_observation, e.RolloutCameraImage),
        "drive": (policy.drive, e.DriveRequest),
    }
    handlers = {
        name: grpc.unary_unary_rpc_method_handler(
            fn,
            request_deserializer=req.FromString,
            response_serializer=lambda m: m.SerializeToString(),
        )
        for name, (fn, req) in methods.items()
    }
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=args.workers))
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
    address = f"unix:{args.unix}" if args.unix else f"{args.host}:{args.port}"
    server.add_insecure_port(address)
    server.start()
    print(f"route keeper serving {SERVICE} on {address}", flush=True)
    server.wait_for_termination()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=50051)
    p.add_argument("--unix", help="serve on this Unix socket path instead of TCP")
    p.add_argument("--workers", type=int, default=16, help="gRPC worker threads")
    p.add_argument("--cruise-speed", type=float, default=8.0, help="m/s")
    p.add_argument("--delay-ms", type=float, default=0.0, help="sleep before each drive answer")
    p.add_argument("--slow-one-in", type=int, default=1, metavar="K",
                   help="delay only one session in K (chosen by the SHA-256 of its uuid); 1: all")
    p.add_argument("--session-log", help="append a JSON line per closed session to this file")
    p.add_argument("--fail-scene", default="", help="abort every drive of this scene's sessions")
    p.add_argument("--die-after", type=int, default=0, help="exit after this many drive calls")
    p.add_argument("--require-camera", action="store_true", help="refuse to drive before a camera image arrived")
    serve(p.parse_args())


if __name__ == "__main__":
    main()
