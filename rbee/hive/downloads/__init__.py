"""Model downloads of the hive: one job per model, resumed with HTTP Range, retried, verified.

`job` holds a download's state and progress, `files` its partial and finished files in the
models folder, `fetch` the HTTP transfer and its retries, `downloader` the running jobs.
"""

from rbee.hive.downloads.downloader import Downloader
from rbee.hive.downloads.files import parse_sha256
from rbee.hive.downloads.job import DownloadJob

__all__ = ["DownloadJob", "Downloader", "parse_sha256"]
