/* fuzz_model: the model loader on any bytes; a file it accepts must be safe
 * to query: every user's top segments and every id looked up. */
#include <stdlib.h>
#include <string.h>

#include "memfile.h"
#include "model.h"
#include "score.h"
#include "util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char path[64], err[ST_ERRLEN];
    int fd = memfile(data, size, path, sizeof path);
    if (fd < 0) return 0;
    st_model m;
    if (st_model_load(path, &m, err) == 0) {
        float *scores = malloc((size_t)m.segments * sizeof *scores);
        uint32_t idx[4];
        float top[4];
        for (uint32_t u = 0; scores && u < m.users && u < 64; u++) {
            st_score_all_segments(&m, m.U + (size_t)u * m.k, scores);
            st_topk(scores, m.segments, 4, m.hist_idx + m.hist_ptr[u], m.hist_ptr[u + 1] - m.hist_ptr[u], idx, top);
            size_t len;
            const char *id = st_idmap_name(&m.user_ids, u, &len);
            (void)st_idmap_find(&m.user_ids, id, len);
        }
        free(scores);
        char v[64];
        st_model_meta(&m, "inputs", v, sizeof v);
        st_model_free(&m);
    }
    close(fd);
    return 0;
}
