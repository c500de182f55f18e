#ifndef LLM_PRUNE_CBZIP2_SHIM_H
#define LLM_PRUNE_CBZIP2_SHIM_H
#include <bzlib.h>
#endif
