/* bfloat16 GEMM for --compute-dtype bf16.
 *
 * Native: oneDNN's dnnl_gemm_bf16bf16f32 (bf16 inputs, float32 accumulation and output, row-major), which
 * runs AMX or AVX512-BF16 kernels on CPUs that have them. libdnnl.so.2 is loaded at the first use, not
 * linked: the tool builds and runs without it, and a CPU without bf16 instructions never loads it. Before
 * it is trusted, one probe product is checked against the same product computed in double precision.
 * oneDNN's OpenMP pool is held to one thread (OMP_NUM_THREADS=1 unless the environment set it): like
 * OpenBLAS, every call runs on the calling thread and the caller splits the work across its own workers.
 *
 * Which kernels oneDNN runs is its own choice by CPU features (AMX-BF16 tiles where the CPU and the kernel
 * allow them, else AVX512-BF16); dnnl_get_effective_cpu_isa says which, and ONEDNN_MAX_CPU_ISA (or the older
 * DNNL_MAX_CPU_ISA) in the environment caps it. Both are reported, never overridden, as for OPENBLAS_CORETYPE.
 *
 * Rounding float32 to bf16 is round-to-nearest-even on the upper 16 bits; a NaN stays a (quiet) NaN.
 */
#define _GNU_SOURCE
#include "blas_runtime.h"
#include <dlfcn.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef int (*bf16_gemm_fn)(char, char, long, long, long, float, const unsigned short *, long,
                            const unsigned short *, long, float, float *, long);

typedef int (*isa_fn)(void);
struct dnnl_version_record { int major, minor, patch; const char *hash; unsigned cpu_runtime, gpu_runtime; };
typedef const struct dnnl_version_record *(*version_fn)(void);

static bf16_gemm_fn native_gemm;
static char reason[256] = "";
static char kernel[160] = "";
static int kernel_isa = -1;
static pthread_once_t once = PTHREAD_ONCE_INIT;

static inline unsigned short to_bf16(float x) {
    unsigned u;
    memcpy(&u, &x, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (unsigned short)((u >> 16) | 0x40u);
    u += 0x7fffu + ((u >> 16) & 1u);
    return (unsigned short)(u >> 16);
}

static inline float from_bf16(unsigned short h) {
    unsigned u = (unsigned)h << 16;
    float x;
    memcpy(&x, &u, 4);
    return x;
}

void llmprune_to_bf16(const float *src, unsigned short *dst, long count) {
    for (long i = 0; i < count; i++) dst[i] = to_bf16(src[i]);
}

void llmprune_round_to_bf16(const float *src, float *dst, long count) {
    for (long i = 0; i < count; i++) dst[i] = from_bf16(to_bf16(src[i]));
}

/* A 24×40×72 product of bf16 values against its double-precision sum: exact inputs, so only the float32
   accumulation differs. */
static int probe(bf16_gemm_fn f, char *why, size_t size) {
    enum { M = 24, N = 40, K = 72 };
    static unsigned short a[M * K], b[K * N];
    static float c[M * N];
    for (int i = 0; i < M * K; i++) a[i] = to_bf16((float)((i * 7) % 23 - 11) / 8.0f);
    for (int i = 0; i < K * N; i++) b[i] = to_bf16((float)((i * 5) % 19 - 9) / 4.0f);
    int status = f('N', 'N', M, N, K, 1.0f, a, K, b, N, 0.0f, c, N);
    if (status != 0) {
        snprintf(why, size, "oneDNN's bf16 GEMM is not implemented for this CPU (dnnl status %d)", status);
        return 0;
    }
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++) {
            double s = 0;
            for (int k = 0; k < K; k++) s += (double)from_bf16(a[i * K + k]) * from_bf16(b[k * N + j]);
            if (!(fabs(c[i * N + j] - s) <= 1e-4 * (1 + fabs(s)))) {
                snprintf(why, size, "oneDNN's bf16 GEMM disagrees with a double-precision check (%g vs %g)",
                         c[i * N + j], s);
                return 0;
            }
        }
    return 1;
}

/* The name of a dnnl_cpu_isa_t value of oneDNN 2.x. */
static const char *dnnl_isa_name(int isa) {
    /* Each value is its predecessors' bits plus its own. */
    switch (isa) {
    case 0x0: return "all";
    case 0x1: return "sse41";
    case 0x3: return "avx";
    case 0x7: return "avx2";
    case 0xf: return "avx512_mic";
    case 0x1f: return "avx512_mic_4ops";
    case 0x27: return "avx512_core";
    case 0x67: return "avx512_core_vnni";
    case 0xe7: return "avx512_core_bf16";
    case 0x3e7: return "avx512_core_amx";
    case 0x407: return "avx2_vnni";
    case -1: return "isa unknown";
    default: return "isa newer than this build knows";
    }
}

static void load(void) {
    const struct llmprune_blas_runtime *rt = llmprune_blas_runtime();
    if (!(rt->features & (LLMPRUNE_AVX512BF16 | LLMPRUNE_AMXBF16))) {
        snprintf(reason, sizeof reason, "this CPU has no AVX512-BF16 or AMX-BF16 instructions");
        return;
    }
    if (!getenv("OMP_NUM_THREADS")) setenv("OMP_NUM_THREADS", "1", 1);
    void *lib = dlopen("libdnnl.so.2", RTLD_NOW | RTLD_LOCAL);
    if (!lib) {
        snprintf(reason, sizeof reason, "libdnnl.so.2 (oneDNN) is not installed (Debian: apt install libdnnl2)");
        return;
    }
    bf16_gemm_fn f = (bf16_gemm_fn)dlsym(lib, "dnnl_gemm_bf16bf16f32");
    if (!f) {
        snprintf(reason, sizeof reason, "libdnnl.so.2 has no dnnl_gemm_bf16bf16f32");
        return;
    }
    const char *cap = getenv("ONEDNN_MAX_CPU_ISA") ? "ONEDNN_MAX_CPU_ISA" : getenv("DNNL_MAX_CPU_ISA") ? "DNNL_MAX_CPU_ISA" : NULL;
    if (!probe(f, reason, sizeof reason)) {
        if (cap) {
            size_t used = strlen(reason);
            snprintf(reason + used, sizeof reason - used, " (%s=%s is set)", cap, getenv(cap));
        }
        return;
    }
    native_gemm = f;
    isa_fn isa = (isa_fn)dlsym(lib, "dnnl_get_effective_cpu_isa");
    version_fn version = (version_fn)dlsym(lib, "dnnl_version");
    kernel_isa = isa ? isa() : -1;
    char v[32] = "oneDNN";
    if (version && version()) snprintf(v, sizeof v, "oneDNN %d.%d.%d", version()->major, version()->minor, version()->patch);
    char capped[96] = "";
    if (cap) snprintf(capped, sizeof capped, ", capped by %s=%s", cap, getenv(cap));
    snprintf(kernel, sizeof kernel, "%s, %s%s", v, dnnl_isa_name(kernel_isa), capped);
}

const char *llmprune_bf16_kernel(void) {
    if (!llmprune_bf16_native()) return "";
    return kernel;
}

int llmprune_bf16_isa(void) {
    if (!llmprune_bf16_native()) return -1;
    return kernel_isa;
}

int llmprune_bf16_native(void) {
    if (getenv("LLM_PRUNE_BF16_EMULATE")) {
        snprintf(reason, sizeof reason, "LLM_PRUNE_BF16_EMULATE is set");
        return 0;
    }
    pthread_once(&once, load);
    return native_gemm != NULL;
}

const char *llmprune_bf16_reason(void) {
    pthread_once(&once, load);
    return reason;
}

int llmprune_bf16_gemm(int trans_a, int trans_b, long m, long n, long k, float alpha,
                       const unsigned short *a, long lda, const unsigned short *b, long ldb,
                       float beta, float *c, long ldc) {
    if (!native_gemm) return -1;
    return native_gemm(trans_a ? 'T' : 'N', trans_b ? 'T' : 'N', m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}
