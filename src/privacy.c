/* privacy: the floors on audiences and seed lists (privacy.h). */
#include "privacy.h"

#include <stdio.h>

int st_privacy_audience(uint64_t users, uint64_t min_audience, char *msg, size_t len)
{
    if (users >= min_audience) return 0;
    snprintf(msg, len, "audience below the privacy floor of %llu users (--min-audience): fewer users match",
             (unsigned long long)min_audience);
    return -1;
}

int st_privacy_seeds(uint64_t known, uint64_t given, uint64_t min_seeds, char *msg, size_t len)
{
    uint64_t floor = min_seeds ? min_seeds : 1;
    if (known >= floor) return 0;
    if (known == 0 && floor == 1)
        snprintf(msg, len, "none of the %llu seed users is in the model", (unsigned long long)given);
    else
        snprintf(msg, len, "%llu of the %llu seeds are known users; look-alikes need at least %llu (the privacy "
                           "floor, --min-seeds)",
                 (unsigned long long)known, (unsigned long long)given, (unsigned long long)floor);
    return -1;
}
