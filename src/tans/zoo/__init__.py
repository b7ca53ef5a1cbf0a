"""The model zoo: entry metadata, the crash-safe store, archives to move entries around, and
constraints that filter entries by their metadata."""

from tans.zoo.archive import ImportReport, export_zoo, import_zoo
from tans.zoo.constraints import Constraints
from tans.zoo.entry import ZooEntry, unit_key
from tans.zoo.store import VerifyReport, Zoo, open_zoo

__all__ = ["Zoo", "open_zoo", "ZooEntry", "Constraints", "VerifyReport", "ImportReport", "unit_key", "export_zoo",
           "import_zoo"]
