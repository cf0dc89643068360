/* fuzz_factors: the text factor reader of `starling import` (CSV, TSV,
 * `id,[f1, ...]` and JSON lines). */
#include "interop.h"
#include "memfile.h"
#include "util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char path[64], err[ST_ERRLEN];
    int fd = memfile(data, size, path, sizeof path);
    if (fd < 0) return 0;
    uint64_t rows;
    uint32_t k;
    st_factors_check_text(path, &rows, &k, err);
    close(fd);
    return 0;
}
