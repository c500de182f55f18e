#ifndef LLM_PRUNE_CZLIB_SHIM_H
#define LLM_PRUNE_CZLIB_SHIM_H
#include <zlib.h>
#endif
