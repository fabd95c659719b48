#ifndef EPCS_PARTNER_H
#define EPCS_PARTNER_H

/*
 * A partner is who a key belongs to and who reports, requests and referrals are addressed to:
 * the keys (auth/) and the case store (store/) both hold partner ids, so their bounds live
 * here, below both.
 */

/** Room for a partner id and its NUL: ids are at most EPCS_KEY_PARTNER_MAX - 1 bytes. */
#define EPCS_KEY_PARTNER_MAX 64

/**
 * True when `id` may name a partner: 1 to EPCS_KEY_PARTNER_MAX - 1 bytes of a-z, 0-9, '_',
 * '-' and '.', what a keys file accepts and what reports and requests are addressed to.
 */
int epcs_partner_id_valid(const char *id);

#endif
