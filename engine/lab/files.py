"""Names of the operator's lab files (``ntd lab``), apart from the servers so that the command
line reads them without loading aiohttp, Pillow or cryptography."""

from __future__ import annotations

from pathlib import Path

STATE_DIR = ".ntd-lab"
INFO_FILE = "lab.json"  # endpoints; written last by the lab process: its presence = ready
PID_FILE = "lab.pid"
LOG_FILE = "lab.log"
CONFIG_FILE = "lab.toml"
URLS_FILE = "lab-urls.txt"
HASHLIST_FILE = "lab-hashlist.csv"
PASSWORD_ENV = "NTD_LAB_ICCAM_PASSWORD"
#: what ``lab up`` writes beside the state folder (``lab down`` removes exactly these)
PUBLIC_FILES = (CONFIG_FILE, URLS_FILE, HASHLIST_FILE)


def state_dir(folder: Path) -> Path:
    """The lab's own folder inside ``folder``."""
    return folder / STATE_DIR
