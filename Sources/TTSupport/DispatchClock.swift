// DispatchClock — ttfc's one clock for measuring durations (compile times, thunk profiles,
// training phases, benchmark rounds): seconds of CLOCK_MONOTONIC as a Double, which never jumps
// with the wall clock, read without Foundation or Dispatch. Only differences of two readings
// mean anything.

import Glibc

public enum DispatchClock {
  /// Monotonic seconds since an arbitrary fixed point (the machine's boot).
  public static func now() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) * 1e-9
  }
}
