// CSupport — the few CPU hints Swift does not expose, as inline C: a software prefetch, used by the
// embedding tables to overlap the cache misses of random row accesses (a lookup or an optimizer
// update touches rows scattered over hundreds of megabytes; without prefetching each miss stalls).
#ifndef TTFC_CSUPPORT_H
#define TTFC_CSUPPORT_H

/// Asks the CPU to bring the cache line holding `address` closer (read, keep in all cache levels).
static inline void ttfc_prefetch(const void *address) { __builtin_prefetch(address, 0, 3); }

/// The same, for a line about to be written.
static inline void ttfc_prefetch_for_write(const void *address) { __builtin_prefetch(address, 1, 3); }

/// The CPUs the calling thread may run on (its affinity mask), in order, at most `capacity`:
/// their count, or -1 if the mask cannot be read.
int ttfc_allowed_cpus(int *cpus, int capacity);

/// Binds the calling thread to one CPU; 0 on success.
int ttfc_bind_current_thread(int cpu);

/// Whether the calling thread is the process's main thread.
int ttfc_is_main_thread(void);

#endif
