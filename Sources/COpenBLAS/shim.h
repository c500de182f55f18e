#ifndef LLM_PRUNE_COPENBLAS_SHIM_H
#define LLM_PRUNE_COPENBLAS_SHIM_H
#include <cblas.h>

/* OpenBLAS exports the Fortran LAPACK symbols; Fortran passes every argument by reference and
   stores matrices column-major, so a row-major symmetric matrix is handed over as its transpose. */
void spotrf_(const char *uplo, const int *n, float *a, const int *lda, int *info);
void spotri_(const char *uplo, const int *n, float *a, const int *lda, int *info);
void dpotrf_(const char *uplo, const int *n, double *a, const int *lda, int *info);
void dpotri_(const char *uplo, const int *n, double *a, const int *lda, int *info);

void openblas_set_num_threads(int num_threads);
int openblas_get_num_threads(void);
#endif
