/* fuzz_npy: the .npy reader used by `starling import`. */
#include "interop.h"
#include "memfile.h"
#include "util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char path[64], err[ST_ERRLEN];
    int fd = memfile(data, size, path, sizeof path);
    if (fd < 0) return 0;
    float *f;
    uint64_t rows;
    uint32_t cols;
    if (st_npy_read(path, &f, &rows, &cols, err) == 0) st_free(f);
    close(fd);
    return 0;
}
