"""``python -m services.ingest``: run the ingest service until SIGTERM."""

from services.ingest.service import main
from shared.lifecycle import run_service

if __name__ == "__main__":
    raise SystemExit(run_service(main))
