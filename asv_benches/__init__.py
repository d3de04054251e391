"""asv suite: `asv run --python=same --quick` benchmarks the installed lowprec."""

import lowprec

# Print the active ISA when the suite loads (as numpy's benchmarks do): a number measured on
# the portable path must not be mistaken for an AVX2 one.
print(f"lowprec {lowprec.__version__}: kernels {lowprec.config_dict()['kernel_isas']}")
