// OpenBLAS's CBLAS interface (cblas_sgemm, cblas_sbgemm) and its configuration queries.
#include <cblas.h>
