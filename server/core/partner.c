#include "partner.h"

#include <string.h>

int epcs_partner_id_valid(const char *id)
{
    size_t len = strlen(id);
    if (len == 0 || len >= EPCS_KEY_PARTNER_MAX)
        return 0;
    for (size_t i = 0; i < len; i++) {
        char c = id[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-' || c == '.'))
            return 0;
    }
    return 1;
}
