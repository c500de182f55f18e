#ifndef LLM_PRUNE_BLAS_RUNTIME_H
#define LLM_PRUNE_BLAS_RUNTIME_H

/* What the process start-up did to OpenBLAS (see blas_runtime.c). */

/* Where the OpenBLAS core in use came from. */
enum llmprune_core_source {
    LLMPRUNE_CORE_LIBRARY = 0,     /* OpenBLAS's own detection was already the best core for the CPU */
    LLMPRUNE_CORE_ENVIRONMENT = 1, /* OPENBLAS_CORETYPE was set by the environment and respected */
    LLMPRUNE_CORE_SELECTED = 2,    /* llm-prune re-initialized OpenBLAS with a better core */
    LLMPRUNE_CORE_FIXED = 3        /* OpenBLAS is not a DYNAMIC_ARCH build: its core cannot be changed */
};

/* CPU features usable by user code: the instruction set and, for AVX/AVX-512/AMX, the OS saving the registers. */
enum llmprune_cpu_feature {
    LLMPRUNE_SSE3 = 1 << 0, LLMPRUNE_SSSE3 = 1 << 1, LLMPRUNE_SSE42 = 1 << 2, LLMPRUNE_AVX = 1 << 3,
    LLMPRUNE_AVX2 = 1 << 4, LLMPRUNE_FMA = 1 << 5, LLMPRUNE_AVX512F = 1 << 6, LLMPRUNE_AVX512BW = 1 << 7,
    LLMPRUNE_AVX512VL = 1 << 8, LLMPRUNE_AVX512DQ = 1 << 9, LLMPRUNE_AVX512BF16 = 1 << 10,
    LLMPRUNE_AMXBF16 = 1 << 11, LLMPRUNE_AMXTILE = 1 << 12
};

struct llmprune_blas_runtime {
    unsigned features;                 /* llmprune_cpu_feature bits */
    char vendor[13];                   /* cpuid vendor string, e.g. "AuthenticAMD" */
    char library_core[32];             /* the core OpenBLAS chose by itself at load time */
    char expected_core[32];            /* the best core of this OpenBLAS build for the features */
    char core[32];                     /* the core in use now */
    char environment_core[32];         /* OPENBLAS_CORETYPE as the environment set it, or "" */
    char config[160];                  /* openblas_get_config() */
    int source;                        /* llmprune_core_source */
    int threads;                       /* OpenBLAS's own thread count after start-up (always 1) */
};

/* The start-up result; filled by a constructor before main runs. */
const struct llmprune_blas_runtime *llmprune_blas_runtime(void);

/* The OpenBLAS core name in use now, as openblas_get_corename() reports it. */
const char *llmprune_blas_current_core(void);

/* Per-thread count of open "do not split this thread's GEMMs" scopes (thread-local, no global state). */
int llmprune_serial_depth(void);
void llmprune_serial_enter(void);
void llmprune_serial_leave(void);

/* bfloat16 GEMM (bf16_gemm.c). Whether oneDNN's native bf16 GEMM is loaded and passed its check (loads it
   at the first call; 0 when the CPU lacks bf16 instructions, oneDNN is missing, or
   LLM_PRUNE_BF16_EMULATE is set), and why not. */
int llmprune_bf16_native(void);
const char *llmprune_bf16_reason(void);
/* C (m, n) = alpha · op(A) · op(B) + beta · C, row-major, A and B bf16; -1 without the native GEMM,
   else oneDNN's status (0 = success). */
int llmprune_bf16_gemm(int trans_a, int trans_b, long m, long n, long k, float alpha,
                       const unsigned short *a, long lda, const unsigned short *b, long ldb,
                       float beta, float *c, long ldc);
/* float32 → bf16 bits, and float32 → the float32 value of its bf16 rounding (round to nearest even). */
void llmprune_to_bf16(const float *src, unsigned short *dst, long count);
void llmprune_round_to_bf16(const float *src, float *dst, long count);

#endif
