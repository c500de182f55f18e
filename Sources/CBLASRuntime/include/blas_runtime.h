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

/* Restarts OpenBLAS's dynamic dispatch on `core` (its spelling, e.g. "Prescott"), as the library would
   leave a CPU it does not recognize, then chooses again as at start-up and records it. Returns 0, doing
   nothing, when the library has no dynamic dispatch or OPENBLAS_CORETYPE is set. Call it before any other
   BLAS work of the process (the tests' child process does, to check the re-selection). */
int llmprune_blas_restart_from_core(const char *core);

/* Per-thread count of open "do not split this thread's GEMMs" scopes (thread-local, no global state). */
int llmprune_serial_depth(void);
void llmprune_serial_enter(void);
void llmprune_serial_leave(void);

/* bfloat16 GEMM (bf16_gemm.c). Whether oneDNN's native bf16 GEMM is loaded and passed its check (loads it
   at the first call; 0 when the CPU lacks bf16 instructions, oneDNN is missing, or
   LLM_PRUNE_BF16_EMULATE is set), and why not. */
int llmprune_bf16_native(void);
const char *llmprune_bf16_reason(void);
/* Where native: "oneDNN <version>, <ISA oneDNN dispatches to>[, capped by <variable>=<value>]", and the raw
   dnnl_cpu_isa_t (-1 when not native or unknown); "" elsewhere. */
const char *llmprune_bf16_kernel(void);
int llmprune_bf16_isa(void);
/* C (m, n) = alpha · op(A) · op(B) + beta · C, row-major, A and B bf16; -1 without the native GEMM,
   else oneDNN's status (0 = success). */
int llmprune_bf16_gemm(int trans_a, int trans_b, long m, long n, long k, float alpha,
                       const unsigned short *a, long lda, const unsigned short *b, long ldb,
                       float beta, float *c, long ldc);
/* float32 → bf16 bits, and float32 → the float32 value of its bf16 rounding (round to nearest even). */
void llmprune_to_bf16(const float *src, unsigned short *dst, long count);
void llmprune_round_to_bf16(const float *src, float *dst, long count);

/* Elementwise float32 kernels (vector_math.c), one copy per instruction set: "sse2" (baseline x86-64) or
   "avx2+fma". Each works on n contiguous floats; out may alias an input. */
struct llmprune_vector_kernels {
    const char *isa;
    float (*exp1)(float x);                                   /* e^x (0 below -87.34, +inf above 88.376, NaN kept) */
    float (*exp_shifted)(float *x, long n, float shift);      /* x[i] = e^(x[i] - shift); returns their float sum */
    double (*exp_shifted_sum)(const float *x, long n, float shift); /* sum of e^(x[i] - shift), in double */
    float (*maximum)(const float *x, long n);                 /* largest x[i], n > 0; NaN lanes ignored */
    void (*silu_mul)(float *out, const float *gate, const float *up, long n); /* out = gate·σ(gate)·up */
    void (*silu_mul_backward)(float *dgate, float *dup, const float *dact, const float *gate, const float *up,
                              long n);                        /* the SwiGLU gradients; dgate may alias dact */
    /* groups of 4 consecutive scores: pruned[i] = 1 for the k lowest of each group (ties: earlier first), else 0 */
    void (*prune_lowest_of_4)(const float *scores, long groups, int k, unsigned char *pruned);
    double (*sum_squares)(const float *x, long n);            /* sum of x[i]^2, in double */
    void (*add_squares)(double *acc, const float *x, long n); /* acc[i] += x[i]^2, in double */
    /* one RMSprop step: avg = a*avg + (1-a)*grad^2, param -= lr * grad / (sqrt(avg) + eps) */
    void (*rmsprop_update)(float *param, float *avg, const float *grad, long n, float smoothing, float lr, float eps);
};
/* The copy in use: AVX2+FMA where the CPU and OS have them, else baseline (chosen once). */
const struct llmprune_vector_kernels *llmprune_vector_kernels(void);
const struct llmprune_vector_kernels *llmprune_vector_kernels_baseline(void);
/* NULL where the CPU lacks AVX2 or FMA. */
const struct llmprune_vector_kernels *llmprune_vector_kernels_avx2(void);
/* The copy in use, called directly. */
float llmprune_exp(float x);
float llmprune_exp_shifted(float *x, long n, float shift);
double llmprune_exp_shifted_sum(const float *x, long n, float shift);
float llmprune_maximum(const float *x, long n);
void llmprune_silu_mul(float *out, const float *gate, const float *up, long n);
void llmprune_silu_mul_backward(float *dgate, float *dup, const float *dact, const float *gate, const float *up, long n);
void llmprune_prune_lowest_of_4(const float *scores, long groups, int k, unsigned char *pruned);
double llmprune_sum_squares(const float *x, long n);
void llmprune_add_squares(double *acc, const float *x, long n);
void llmprune_rmsprop_update(float *param, float *avg, const float *grad, long n, float smoothing, float lr, float eps);

#endif
