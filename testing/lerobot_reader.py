"""Run by the python of a virtual environment with lerobot installed (never imports armdata):
loads each LeRobot dataset with lerobot's own `LeRobotDataset(repo_id, root=DIR)` and prints one
JSON object per DIR, in their order, each on a line of its own after `RESULT ` (lerobot may print
lines of its own), with what the interop test checks: version,
length, episodes, the stats' features, and for every frame of episode EPISODE its action and each
camera's shape and mean pixel (0..1). Several DIRs share one start-up of lerobot and torch.

    python lerobot_reader.py EPISODE DIR [DIR ...]"""
import json
import sys


def main() -> None:
    episode, roots = int(sys.argv[1]), sys.argv[2:]
    for root in roots:
        print("RESULT " + json.dumps(read(root, episode)), flush=True)


def read(root: str, episode: int) -> dict:
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
    return {"lerobot": lerobot.__version__, "codebase_version": ds.meta.info["codebase_version"],
            "length": len(ds), "episodes": ds.num_episodes, "fps": ds.fps,
            "features": sorted(ds.meta.features), "cameras": cameras, "stats": stats,
            "frames": frames}


if __name__ == "__main__":
    main()
