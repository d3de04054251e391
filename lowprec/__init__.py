"""lowprec: fast, exact low-precision CPU kernels for NumPy.

int8 / int4 / bfloat16 matrix products, EmbeddingBag over row-wise quantized tables, bfloat16
emulation and quantization helpers.  ``lowprec.show_config()`` tells which kernels run here.
"""

__version__ = "0.1.0"

from . import faults
from ._config import config_dict, show_config
from ._errors import SoftErrorDetected
from ._packed_weights import PackedWeights
from ._threads import get_num_threads, set_num_threads
from .buffers import buffer_cache_info, set_buffer_cache
from .bf16 import bfloat16, from_bfloat16, round_bfloat16, to_bfloat16
from .embedding import aligned_table, embedding_bag, embedding_bags
from .gemm import linear, matmul_int8, pack_weights, qmatmul, quantize_activations
from .gemm_bf16 import PackedBF16Weights, linear_bf16, matmul_bf16, pack_weights_bf16
from .gemm_int4 import PackedInt4Weights, linear_int4, pack_weights_int4
from .packing import pack_bits, unpack_bits
from .quantization import choose_qparams, dequantize, quantize
from .rowwise import RowwiseQuantizedTable, fused_row_bytes, quantize_rowwise

__all__ = [
    "__version__",
    "PackedBF16Weights",
    "PackedInt4Weights",
    "PackedWeights",
    "RowwiseQuantizedTable",
    "SoftErrorDetected",
    "aligned_table",
    "bfloat16",
    "buffer_cache_info",
    "choose_qparams",
    "config_dict",
    "dequantize",
    "embedding_bag",
    "embedding_bags",
    "from_bfloat16",
    "fused_row_bytes",
    "get_num_threads",
    "linear",
    "linear_bf16",
    "linear_int4",
    "matmul_bf16",
    "matmul_int8",
    "pack_bits",
    "pack_weights",
    "pack_weights_bf16",
    "pack_weights_int4",
    "qmatmul",
    "quantize",
    "quantize_activations",
    "quantize_rowwise",
    "round_bfloat16",
    "set_buffer_cache",
    "set_num_threads",
    "show_config",
    "to_bfloat16",
    "unpack_bits",
]
