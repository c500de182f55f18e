/* Start-up configuration of OpenBLAS, run as a constructor before main (and before any Swift code).
 *
 * 1. Kernel selection. A DYNAMIC_ARCH OpenBLAS picks its kernels at load time from the CPU model; a CPU
 *    newer than the library (e.g. a Sapphire Rapids Xeon under Debian's 0.3.21) gets its oldest SSE3
 *    kernel, 5-10x slower. OpenBLAS's own load-time constructor has already run when this one runs, so
 *    when its choice ranks below what the CPU's features allow, the core is re-selected through the
 *    library's exported gotoblas_dynamic_quit/gotoblas_dynamic_init with OPENBLAS_CORETYPE set for the
 *    duration of the call (OpenBLAS reads it there). Nothing else runs yet, so no GEMM can see the switch.
 *    An OPENBLAS_CORETYPE from the environment is respected as is: some machines set it on purpose.
 * 2. Thread count. OpenBLAS's thread count is one process-wide setting; it is set to 1 here, once, and
 *    never changed: all parallelism is the caller's (Tensor's BLAS.gemm splits C across its own workers,
 *    with a partition that depends only on the shape), so results never depend on what else runs.
 */
#define _GNU_SOURCE
#include "blas_runtime.h"
#include <cpuid.h>
#include <dlfcn.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static struct llmprune_blas_runtime state;
static _Thread_local int serial_depth;

int llmprune_serial_depth(void) { return serial_depth; }
void llmprune_serial_enter(void) { serial_depth += 1; }
void llmprune_serial_leave(void) { if (serial_depth > 0) serial_depth -= 1; }

const struct llmprune_blas_runtime *llmprune_blas_runtime(void) { return &state; }

typedef char *(*name_fn)(void);
typedef void (*void_fn)(void);
typedef void (*set_threads_fn)(int);
typedef int (*get_threads_fn)(void);

const char *llmprune_blas_current_core(void) {
    name_fn f = (name_fn)dlsym(RTLD_DEFAULT, "openblas_get_corename");
    return f ? f() : "unknown";
}

static unsigned long long xgetbv0(void) {
    unsigned int lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return ((unsigned long long)hi << 32) | lo;
}

static unsigned detect_features(char vendor[13]) {
    unsigned a, b, c, d, f = 0;
    memset(vendor, 0, 13);
    if (!__get_cpuid(0, &a, &b, &c, &d)) return 0;
    unsigned max_leaf = a;
    memcpy(vendor, &b, 4); memcpy(vendor + 4, &d, 4); memcpy(vendor + 8, &c, 4);
    __cpuid(1, a, b, c, d);
    if (c & (1u << 0)) f |= LLMPRUNE_SSE3;
    if (c & (1u << 9)) f |= LLMPRUNE_SSSE3;
    if (c & (1u << 20)) f |= LLMPRUNE_SSE42;
    int osxsave = (c >> 27) & 1, avx = (c >> 28) & 1, fma = (c >> 12) & 1;
    unsigned long long xcr0 = osxsave ? xgetbv0() : 0;
    int ymm = (xcr0 & 0x6) == 0x6;          /* XMM and YMM state saved by the OS */
    int zmm = (xcr0 & 0xe6) == 0xe6;        /* plus opmask and ZMM state */
    int tiles = (xcr0 & 0x60000) == 0x60000; /* AMX tile config and data */
    if (avx && ymm) f |= LLMPRUNE_AVX;
    if (fma && ymm) f |= LLMPRUNE_FMA;
    if (max_leaf >= 7) {
        __cpuid_count(7, 0, a, b, c, d);
        if ((b & (1u << 5)) && ymm) f |= LLMPRUNE_AVX2;
        if (zmm) {
            if (b & (1u << 16)) f |= LLMPRUNE_AVX512F;
            if (b & (1u << 17)) f |= LLMPRUNE_AVX512DQ;
            if (b & (1u << 30)) f |= LLMPRUNE_AVX512BW;
            if (b & (1u << 31)) f |= LLMPRUNE_AVX512VL;
        }
        if (tiles) {
            if (d & (1u << 22)) f |= LLMPRUNE_AMXBF16;
            if (d & (1u << 24)) f |= LLMPRUNE_AMXTILE;
        }
        unsigned a1, b1, c1, d1;
        __cpuid_count(7, 1, a1, b1, c1, d1);
        if (zmm && (a1 & (1u << 5))) f |= LLMPRUNE_AVX512BF16;
    }
    return f;
}

/* Rank of an OpenBLAS x86-64 core by the instruction set its kernels use; -1 when unknown. */
static int core_rank(const char *name) {
    static const struct { const char *name; int rank; } table[] = {
        {"prescott", 0}, {"atom", 0}, {"nano", 0}, {"opteron", 0}, {"opteron_sse3", 0}, {"barcelona", 0},
        {"bobcat", 1}, {"core2", 1}, {"penryn", 1}, {"dunnington", 1},
        {"nehalem", 2},
        {"sandybridge", 3}, {"bulldozer", 3}, {"piledriver", 3}, {"steamroller", 3}, {"excavator", 3},
        {"haswell", 4}, {"zen", 4},
        {"skylakex", 5},
        {"cooperlake", 6}, {"sapphirerapids", 7},
    };
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++)
        if (strcasecmp(name, table[i].name) == 0) return table[i].rank;
    return -1;
}

/* Whether this OpenBLAS build holds kernels for `core` (DYNAMIC_ARCH exports gotoblas_<CORE>). */
static int library_has_core(const char *core) {
    char symbol[64] = "gotoblas_";
    size_t n = strlen(symbol);
    for (size_t i = 0; core[i] && n < sizeof symbol - 1; i++, n++)
        symbol[n] = (core[i] >= 'a' && core[i] <= 'z') ? core[i] - 32 : core[i];
    symbol[n] = 0;
    return dlsym(RTLD_DEFAULT, symbol) != NULL;
}

/* The best core of this library for the features, in OpenBLAS's spelling. */
static const char *best_core(unsigned f, const char *vendor) {
    int avx512 = (f & LLMPRUNE_AVX512F) && (f & LLMPRUNE_AVX512BW) && (f & LLMPRUNE_AVX512VL) && (f & LLMPRUNE_AVX512DQ);
    if (avx512 && (f & LLMPRUNE_AMXBF16) && library_has_core("sapphirerapids")) return "SapphireRapids";
    if (avx512 && (f & LLMPRUNE_AVX512BF16) && library_has_core("cooperlake")) return "Cooperlake";
    if (avx512 && library_has_core("skylakex")) return "SkylakeX";
    if ((f & LLMPRUNE_AVX2) && (f & LLMPRUNE_FMA)) {
        if (strcmp(vendor, "AuthenticAMD") == 0 || strcmp(vendor, "HygonGenuine") == 0) {
            if (library_has_core("zen")) return "Zen";
        }
        if (library_has_core("haswell")) return "Haswell";
    }
    if ((f & LLMPRUNE_AVX) && library_has_core("sandybridge")) return "Sandybridge";
    if ((f & LLMPRUNE_SSE42) && library_has_core("nehalem")) return "Nehalem";
    if ((f & LLMPRUNE_SSSE3) && library_has_core("core2")) return "Core2";
    return "Prescott";
}

static void copy(char *dst, size_t size, const char *src) {
    strncpy(dst, src ? src : "", size - 1);
    dst[size - 1] = 0;
}

/* Records what the library chose and, unless OPENBLAS_CORETYPE decides, moves it to the best core for
   the CPU when its own choice is older; one OpenBLAS thread. */
static void select_core(void) {
    void_fn quit = (void_fn)dlsym(RTLD_DEFAULT, "gotoblas_dynamic_quit");
    void_fn init = (void_fn)dlsym(RTLD_DEFAULT, "gotoblas_dynamic_init");
    name_fn config = (name_fn)dlsym(RTLD_DEFAULT, "openblas_get_config");
    copy(state.config, sizeof state.config, config ? config() : "unknown BLAS");
    copy(state.library_core, sizeof state.library_core, llmprune_blas_current_core());
    copy(state.expected_core, sizeof state.expected_core, best_core(state.features, state.vendor));
    const char *env = getenv("OPENBLAS_CORETYPE");
    if (env && *env) {
        copy(state.environment_core, sizeof state.environment_core, env);
        state.source = LLMPRUNE_CORE_ENVIRONMENT;
    } else if (!quit || !init) {
        state.source = LLMPRUNE_CORE_FIXED;
    } else if (core_rank(state.library_core) < core_rank(state.expected_core)) {
        setenv("OPENBLAS_CORETYPE", state.expected_core, 1);
        quit();
        init();
        unsetenv("OPENBLAS_CORETYPE");  /* child processes make their own choice */
        state.source = LLMPRUNE_CORE_SELECTED;
    } else {
        state.source = LLMPRUNE_CORE_LIBRARY;
    }
    copy(state.core, sizeof state.core, llmprune_blas_current_core());
    set_threads_fn set = (set_threads_fn)dlsym(RTLD_DEFAULT, "openblas_set_num_threads");
    get_threads_fn get = (get_threads_fn)dlsym(RTLD_DEFAULT, "openblas_get_num_threads");
    if (set) set(1);
    state.threads = get ? get() : 1;
}

__attribute__((constructor)) static void llmprune_configure_blas(void) {
    state.features = detect_features(state.vendor);
    select_core();
}

int llmprune_blas_restart_from_core(const char *core) {
    void_fn quit = (void_fn)dlsym(RTLD_DEFAULT, "gotoblas_dynamic_quit");
    void_fn init = (void_fn)dlsym(RTLD_DEFAULT, "gotoblas_dynamic_init");
    if (!quit || !init || getenv("OPENBLAS_CORETYPE")) return 0;
    setenv("OPENBLAS_CORETYPE", core, 1);
    quit();
    init();
    unsetenv("OPENBLAS_CORETYPE");
    select_core();
    return 1;
}
