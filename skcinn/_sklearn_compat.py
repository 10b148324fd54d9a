"""The one place where skcinn touches private scikit-learn API.

scikit-learn's parameter validation (``_fit_context``, ``Interval``, ``StrOptions``) is
private; importing it here only means an upstream change touches one file.
"""

from sklearn.base import _fit_context
from sklearn.utils._param_validation import HasMethods, Interval, StrOptions

__all__ = ["HasMethods", "Interval", "StrOptions", "_fit_context"]
