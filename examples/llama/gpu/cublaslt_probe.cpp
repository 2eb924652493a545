// Prints, as JSON, the cublasLt.h values that gpu/cublaslt.ts hard-codes, so the GPU check can
// compare them with this machine's header (gpu-check.sh builds it with the host compiler when
// cublasLt.h is found; it needs no GPU and links nothing).
#include <cstdio>
#include <cublasLt.h>

int main() {
  std::printf(
      "{\"CUBLAS_COMPUTE_32F\": %d, \"CUDA_R_32F\": %d, \"CUDA_R_16BF\": %d, \"CUBLAS_OP_N\": %d, \"CUBLAS_OP_T\": %d, "
      "\"CUBLASLT_MATMUL_DESC_TRANSA\": %d, \"CUBLASLT_MATMUL_DESC_TRANSB\": %d, \"CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES\": %d, "
      "\"HEURISTIC_RESULT_BYTES\": %d, \"ALGO_BYTES\": %d}\n",
      (int)CUBLAS_COMPUTE_32F, (int)CUDA_R_32F, (int)CUDA_R_16BF, (int)CUBLAS_OP_N, (int)CUBLAS_OP_T, (int)CUBLASLT_MATMUL_DESC_TRANSA,
      (int)CUBLASLT_MATMUL_DESC_TRANSB, (int)CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, (int)sizeof(cublasLtMatmulHeuristicResult_t),
      (int)sizeof(cublasLtMatmulAlgo_t));
  return 0;
}
