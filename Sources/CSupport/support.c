// CSupport has only inline functions (include/CSupport.h); SwiftPM needs one C file per C target.
#include "CSupport.h"
