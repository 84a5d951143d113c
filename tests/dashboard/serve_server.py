"""``leanml serve``'s full app, the dashboard mounted (leanml.app.full_app), under uvicorn on
127.0.0.1, for the dashboard tests.

    python tests/dashboard/serve_server.py --port P --dir DIR --token T
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import scenario
import uvicorn

from leanml.app import full_app
from leanml.config import Settings
from leanml.serving import create_app


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--dir", type=Path, required=True)
    ap.add_argument("--token", default="test-admin-token")
    args = ap.parse_args()
    if not (args.dir / "models").is_dir():
        scenario.build_registry(args.dir / "models", ("intent",))
    settings = Settings.load(env={}).replace(
        models_dir=args.dir / "models",
        store_url=f"sqlite:///{args.dir / 'serve-store.db'}",
        allow_download=False,
    )
    served = create_app(settings, admin_token=args.token)
    app = full_app(served, refresh_s=1.0)
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
