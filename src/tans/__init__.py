"""tans: task-adaptive neural network search.

Given a labelled image dataset and deployment constraints, retrieve the pretrained network from a
model zoo that will do best on it after a short fine-tuning, then fine-tune it.
"""

from tans._errors import TansError, TansWarning
from tans.data import Dataset, WorkingFormat, load_dataset, to_working

__version__ = "0.1.0"

__all__ = ["Dataset", "TansError", "TansWarning", "WorkingFormat", "__version__", "load_dataset", "to_working"]
