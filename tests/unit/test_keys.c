#include <math.h>
#include <stdlib.h>
#include <unistd.h>

#include "keys.h"
#include "testing.h"

/* A record as a store would hold it, for `token`'s key. */
static struct epcs_key_record record_for(const char *partner, enum epcs_role role, double rate,
                                         char token[EPCS_KEY_TOKEN_LEN + 1])
{
    struct epcs_key_record record;
    char err[256] = "";
    if (epcs_key_mint(partner, role, rate, &record, token, err, sizeof(err)) != 0)
        fprintf(stderr, "cannot mint a key: %s\n", err);
    return record;
}

static void test_empty_keyring(void)
{
    char err[512] = "";
    struct epcs_keyring *keyring = epcs_keyring_create(NULL, 0, err, sizeof(err));
    EXPECT(keyring != NULL);
    EXPECT_INT(keyring ? keyring->count : 1, 0);
    EXPECT(keyring == NULL || epcs_keyring_verify(keyring, "", 0) == NULL);
    epcs_keyring_release(keyring);
}

static void test_verify(void)
{
    char token[EPCS_KEY_TOKEN_LEN + 1], second[EPCS_KEY_TOKEN_LEN + 1], err[512] = "";
    struct epcs_key_record records[2] = {record_for("naver", EPCS_ROLE_PARTNER, 0, token),
                                         record_for("nec-staff", EPCS_ROLE_STAFF, 25, second)};
    EXPECT_INT(strlen(token), EPCS_KEY_TOKEN_LEN);
    EXPECT(strncmp(token, "epcs_", 5) == 0);
    EXPECT(strncmp(token + 5, records[0].id, EPCS_KEY_ID_LEN) == 0);
    struct epcs_keyring *keyring = epcs_keyring_create(records, 2, err, sizeof(err));
    EXPECT(keyring != NULL);
    if (keyring == NULL)
        return;
    EXPECT_INT(keyring->count, 2);
    /* Sorted by id whatever order the store gave. */
    EXPECT(strcmp(keyring->keys[0].id, keyring->keys[1].id) < 0);
    struct epcs_key *found = epcs_keyring_verify(keyring, token, strlen(token));
    EXPECT(found != NULL);
    EXPECT_STR(found ? found->partner : NULL, "naver");
    EXPECT_INT(found ? found->role : 0, EPCS_ROLE_PARTNER);
    EXPECT_STR(found ? found->created : NULL, records[0].created);
    found = epcs_keyring_verify(keyring, second, strlen(second));
    EXPECT_STR(found ? found->partner : NULL, "nec-staff");
    EXPECT(found != NULL && found->rate == 25);

    /* One wrong character of the secret, of the id, or a cut token: no key. */
    char wrong[EPCS_KEY_TOKEN_LEN + 1];
    memcpy(wrong, token, sizeof(wrong));
    wrong[EPCS_KEY_TOKEN_LEN - 1] = wrong[EPCS_KEY_TOKEN_LEN - 1] == '0' ? '1' : '0';
    EXPECT(epcs_keyring_verify(keyring, wrong, strlen(wrong)) == NULL);
    memcpy(wrong, token, sizeof(wrong));
    wrong[6] = wrong[6] == '0' ? '1' : '0';
    EXPECT(epcs_keyring_verify(keyring, wrong, strlen(wrong)) == NULL);
    EXPECT(epcs_keyring_verify(keyring, token, strlen(token) - 1) == NULL);
    EXPECT(epcs_keyring_verify(keyring, "", 0) == NULL);

    /* The same keys less the first, as after its revocation. */
    struct epcs_keyring *after = epcs_keyring_create(&records[1], 1, err, sizeof(err));
    EXPECT(after != NULL && epcs_keyring_verify(after, token, strlen(token)) == NULL);
    EXPECT(after != NULL && epcs_keyring_verify(after, second, strlen(second)) != NULL);

    /* A partner is known while a key of its own is left; a prefix of an id is not one. */
    EXPECT(epcs_keyring_has_partner(keyring, "naver", 5));
    EXPECT(after != NULL && !epcs_keyring_has_partner(after, "naver", 5));
    EXPECT(after != NULL && epcs_keyring_has_partner(after, "nec-staff", 9));
    EXPECT(after != NULL && !epcs_keyring_has_partner(after, "nec-staff", 3));
    EXPECT(after != NULL && !epcs_keyring_has_partner(after, "nec-staffs", 10));
    epcs_keyring_release(keyring);
    epcs_keyring_release(after);

    /* Two records of one id: a store that holds them is refused, not half believed. */
    records[1] = records[0];
    EXPECT(epcs_keyring_create(records, 2, err, sizeof(err)) == NULL);
    char expected[64];
    snprintf(expected, sizeof(expected), "key id %s appears twice", records[0].id);
    EXPECT_STR(err, expected);
}

static void test_records(void)
{
    char err[512] = "";
    struct epcs_key_record record;
    const char *good[EPCS_KEY_FIELDS] = {
        "0123456789abcdef",
        "naver",
        "staff",
        "00000000000000000000000000000000000000000000000000000000000000ff",
        "2.5",
        "2026-11-22T00:00:00Z"};
    EXPECT_INT(epcs_key_record_parse(good, &record, err, sizeof(err)), 0);
    EXPECT_STR(record.id, "0123456789abcdef");
    EXPECT_INT(record.role, EPCS_ROLE_STAFF);
    EXPECT_INT(record.token_sha256[31], 0xff);
    EXPECT(record.rate == 2.5);
    char hash[65];
    epcs_key_record_hash_hex(&record, hash);
    EXPECT_STR(hash, good[EPCS_KEY_FIELD_SHA256]);
    /* Each field wrong in turn, and what is said of it. */
    const struct {
        enum epcs_key_field field;
        const char *value, *error;
    } bad[] = {
        {EPCS_KEY_FIELD_ID, "xyz", "the id must be 16 lowercase hex digits"},
        {EPCS_KEY_FIELD_ID, "0123456789ABCDEF", "the id must be 16 lowercase hex digits"},
        {EPCS_KEY_FIELD_PARTNER, "Has Space", "partner 'Has Space' must be 1-63 of a-z 0-9 _ - ."},
        {EPCS_KEY_FIELD_ROLE, "root", "role 'root' must be partner, staff or admin"},
        {EPCS_KEY_FIELD_SHA256, "00", "the token hash must be 64 lowercase hex digits"},
        {EPCS_KEY_FIELD_RATE, "fast",
         "rate 'fast' must be a number of requests a second, 0 for the server default"},
        {EPCS_KEY_FIELD_RATE, "-1",
         "rate '-1' must be a number of requests a second, 0 for the server default"},
        {EPCS_KEY_FIELD_RATE, "",
         "rate '' must be a number of requests a second, 0 for the "
         "server default"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        const char *fields[EPCS_KEY_FIELDS];
        memcpy(fields, good, sizeof(fields));
        fields[bad[i].field] = bad[i].value;
        EXPECT_INT(epcs_key_record_parse(fields, &record, err, sizeof(err)), -1);
        EXPECT_STR(err, bad[i].error);
    }
    EXPECT_INT(epcs_role_parse("root"), EPCS_ROLE_NONE);
    EXPECT_INT(epcs_role_parse("admin"), EPCS_ROLE_ADMIN);
    EXPECT(epcs_key_id_valid("0123456789abcdef"));
    EXPECT(!epcs_key_id_valid("0123456789abcde"));
}

static void test_rate_bucket(void)
{
    struct epcs_rate_bucket bucket = {.tokens = NAN};
    pthread_mutex_init(&bucket.lock, NULL);
    /* 2 a second holds a burst of 4, then asks to wait. */
    for (int i = 0; i < 4; i++)
        EXPECT_INT(epcs_rate_take(&bucket, 2, 1, 0), 0);
    EXPECT_INT(epcs_rate_take(&bucket, 2, 1, 0), 1);
    /* A cost beyond the burst waits until the bucket is full, then is paid with a debt. */
    EXPECT_INT(epcs_rate_take(&bucket, 2, 10, 0), 2);
    usleep(600 * 1000);
    EXPECT_INT(epcs_rate_take(&bucket, 2, 1, 0), 0);
    pthread_mutex_destroy(&bucket.lock);

    struct epcs_rate_bucket full = {.tokens = NAN};
    pthread_mutex_init(&full.lock, NULL);
    EXPECT_INT(epcs_rate_take(&full, 2, 10, 0), 0);
    /* 4 - 10 leaves a debt of 6: a single request waits (6 + 1) / 2 seconds, rounded up. */
    EXPECT_INT(epcs_rate_take(&full, 2, 1, 0), 4);
    pthread_mutex_destroy(&full.lock);

    /* A batch: the router takes one, the handler the rest; together they need a full bucket. */
    struct epcs_rate_bucket batch = {.tokens = NAN};
    pthread_mutex_init(&batch.lock, NULL);
    EXPECT_INT(epcs_rate_take(&batch, 2, 1, 0), 0);
    EXPECT_INT(epcs_rate_take(&batch, 2, 9, 1), 0);
    EXPECT_INT(epcs_rate_take(&batch, 2, 1, 0), 4);
    pthread_mutex_destroy(&batch.lock);
}

/* What a bucket tells the other replicas, and what they charge it. */
static void test_shared_usage(void)
{
    struct epcs_rate_bucket bucket = {.tokens = NAN};
    pthread_mutex_init(&bucket.lock, NULL);
    EXPECT(epcs_rate_drain_used(&bucket) == 0);
    /* Given out: 3 requests, a batch of 4 (1 by the router, 3 more), and a refusal that
     * gives its router's token back. */
    for (int i = 0; i < 3; i++)
        EXPECT_INT(epcs_rate_take(&bucket, 10, 1, 0), 0);
    EXPECT_INT(epcs_rate_take(&bucket, 10, 1, 0), 0);
    EXPECT_INT(epcs_rate_take(&bucket, 10, 3, 1), 0);
    EXPECT(epcs_rate_drain_used(&bucket) == 7);
    EXPECT(epcs_rate_drain_used(&bucket) == 0);
    EXPECT_INT(epcs_rate_take(&bucket, 10, 1, 0), 0);
    EXPECT_INT(epcs_rate_take(&bucket, 10, 50, 1), 1);
    EXPECT(epcs_rate_drain_used(&bucket) == 0);
    /* 20 - 8, and 1 given back: 13 left; the others took 15: a debt of 2, a second to wait. */
    epcs_rate_settle(&bucket, 10, 15);
    EXPECT_INT(epcs_rate_take(&bucket, 10, 1, 0), 1);
    pthread_mutex_destroy(&bucket.lock);

    /* A bucket never used starts full before it is charged. */
    struct epcs_rate_bucket fresh = {.tokens = NAN};
    pthread_mutex_init(&fresh.lock, NULL);
    epcs_rate_settle(&fresh, 2, 3);
    EXPECT_INT(epcs_rate_take(&fresh, 2, 1, 0), 0);
    EXPECT_INT(epcs_rate_take(&fresh, 2, 1, 0), 1);
    pthread_mutex_destroy(&fresh.lock);

    /* A reload hands what was not yet told over to the fresh keyring's bucket. */
    char token[EPCS_KEY_TOKEN_LEN + 1], err[256];
    struct epcs_key_record record = record_for("naver", EPCS_ROLE_PARTNER, 5, token);
    struct epcs_keyring *old = epcs_keyring_create(&record, 1, err, sizeof(err));
    struct epcs_keyring *fresh_ring = epcs_keyring_create(&record, 1, err, sizeof(err));
    EXPECT_INT(epcs_rate_take(&old->keys[0].bucket, 5, 2, 0), 0);
    epcs_keyring_inherit_buckets(fresh_ring, old);
    EXPECT(epcs_rate_drain_used(&old->keys[0].bucket) == 0);
    EXPECT(epcs_rate_drain_used(&fresh_ring->keys[0].bucket) == 2);
    epcs_keyring_release(old);
    epcs_keyring_release(fresh_ring);
}

int main(void)
{
    test_empty_keyring();
    test_verify();
    test_records();
    test_rate_bucket();
    test_shared_usage();
    return epcs_test_report();
}
