// placeholder: kernels of this module are being written.
#include "bitlogic.cuh"
