"""The model zoo: entry metadata, the crash-safe store, and archives to move entries around."""

from tans.zoo.archive import ImportReport, export_zoo, import_zoo
from tans.zoo.entry import ZooEntry, unit_key
from tans.zoo.store import VerifyReport, Zoo, open_zoo

__all__ = ["Zoo", "open_zoo", "ZooEntry", "VerifyReport", "ImportReport", "unit_key", "export_zoo", "import_zoo"]
