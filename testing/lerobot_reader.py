"""Run by the python of a virtual environment with lerobot installed (never imports armdata):
loads a LeRobot dataset with lerobot's own `LeRobotDataset(repo_id, root=DIR)` and prints one JSON
object with what the interop test checks: version, length, episodes, the stats' features, and for
every frame of one episode its action and each camera's shape and mean pixel (0..1).

    python lerobot_reader.py DIR [EPISODE]"""
import json
import sys


def main() -> None:
    root, episode = sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 0
    try:
        from lerobot.datasets.lerobot_dataset import LeRobotDataset
    except ImportError:   # lerobot < 0.3
        from lerobot.common.datasets.lerobot_dataset import LeRobotDataset
    import lerobot

    ds = LeRobotDataset("armdata/export", root=root, video_backend="pyav")
    cameras = list(ds.meta.camera_keys)
    indices = [i for i in range(len(ds))
               if int(ds.hf_dataset[i]["episode_index"]) == episode]
    frames = []
    for i in indices:
        item = ds[i]
        frames.append({"index": int(item["index"]), "action": item["action"].tolist(),
                       "task": item["task"],
                       "cameras": {k: {"shape": list(item[k].shape),
                                       "mean": float(item[k].float().mean())} for k in cameras}})
    stats = {k: sorted(v) for k, v in ds.meta.stats.items()}
    print(json.dumps({"lerobot": lerobot.__version__, "codebase_version": ds.meta.info[
        "codebase_version"], "length": len(ds), "episodes": ds.num_episodes, "fps": ds.fps,
        "features": sorted(ds.meta.features), "cameras": cameras, "stats": stats,
        "frames": frames}))


if __name__ == "__main__":
    main()
