// zlib: raw inflate/deflate and CRC-32 for .npz archives (numpy's savez_compressed writes deflate).
#include <zlib.h>
