"""lowprec: fast, exact low-precision CPU kernels for NumPy.

int8 / int4 / bfloat16 matrix products, EmbeddingBag over row-wise quantized tables, bfloat16
emulation and quantization helpers.  ``lowprec.show_config()`` tells which kernels run here.
"""

__version__ = "0.1.0"

from ._config import config_dict, show_config
from ._threads import get_num_threads, set_num_threads

__all__ = [
    "__version__",
    "config_dict",
    "get_num_threads",
    "set_num_threads",
    "show_config",
]
