#include <math.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "keys.h"
#include "testing.h"

static char scratch[] = "/tmp/epcs-test-keys-XXXXXX";
static char path[256];

static void write_file(const char *text)
{
    FILE *file = fopen(path, "w");
    fputs(text, file);
    fclose(file);
}

static struct epcs_keyring *load(char *err)
{
    return epcs_keyring_load(path, err, 512);
}

static void test_missing_file_is_empty(void)
{
    char err[512] = "";
    struct epcs_keyring *keyring = load(err);
    EXPECT(keyring != NULL);
    EXPECT_INT(keyring->count, 0);
    EXPECT_INT(keyring->file_exists, 0);
    epcs_keyring_release(keyring);
}

static void test_create_verify_revoke(void)
{
    char token[EPCS_KEY_TOKEN_LEN + 1], second[EPCS_KEY_TOKEN_LEN + 1], err[512] = "";
    struct epcs_key key, other;
    EXPECT_INT(epcs_keys_file_add(path, "naver", EPCS_ROLE_PARTNER, 0, token, &key, err, 512), 0);
    EXPECT_INT(epcs_keys_file_add(path, "nec-staff", EPCS_ROLE_STAFF, 25, second, &other, err, 512),
               0);
    EXPECT_INT(strlen(token), EPCS_KEY_TOKEN_LEN);
    EXPECT(strncmp(token, "epcs_", 5) == 0);
    EXPECT(strncmp(token + 5, key.id, EPCS_KEY_ID_LEN) == 0);
    struct stat st;
    EXPECT_INT(stat(path, &st), 0);
    /* Only the owner may read who holds which hash. */
    EXPECT_INT(st.st_mode & 0777, 0600);

    /* The token itself is not in the file, only its hash. */
    FILE *file = fopen(path, "r");
    char text[2048] = "";
    size_t got = fread(text, 1, sizeof(text) - 1, file);
    text[got] = '\0';
    fclose(file);
    EXPECT(strstr(text, token + 5 + EPCS_KEY_ID_LEN + 1) == NULL);
    EXPECT_CONTAINS(text, "naver partner");
    EXPECT_CONTAINS(text, "nec-staff staff");

    struct epcs_keyring *keyring = load(err);
    EXPECT(keyring != NULL);
    EXPECT_INT(keyring->count, 2);
    struct epcs_key *found = epcs_keyring_verify(keyring, token, strlen(token));
    EXPECT(found != NULL);
    EXPECT_STR(found ? found->partner : NULL, "naver");
    EXPECT_INT(found ? found->role : 0, EPCS_ROLE_PARTNER);
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

    EXPECT(!epcs_keyring_stale(keyring, path));
    EXPECT_INT(epcs_keys_file_revoke(path, key.id, err, 512), 0);
    EXPECT_INT(epcs_keys_file_revoke(path, key.id, err, 512), 1);
    EXPECT(epcs_keyring_stale(keyring, path));
    struct epcs_keyring *after = load(err);
    EXPECT_INT(after->count, 1);
    EXPECT(epcs_keyring_verify(after, token, strlen(token)) == NULL);
    EXPECT(epcs_keyring_verify(after, second, strlen(second)) != NULL);

    /* A partner is known while a key of its own is left; a prefix of an id is not one. */
    EXPECT(epcs_keyring_has_partner(keyring, "naver", 5));
    EXPECT(!epcs_keyring_has_partner(after, "naver", 5));
    EXPECT(epcs_keyring_has_partner(after, "nec-staff", 9));
    EXPECT(!epcs_keyring_has_partner(after, "nec-staff", 3));
    EXPECT(!epcs_keyring_has_partner(after, "nec-staffs", 10));
    epcs_keyring_release(keyring);
    epcs_keyring_release(after);
}

static void test_refuses_bad_input(void)
{
    char token[EPCS_KEY_TOKEN_LEN + 1], err[512] = "";
    struct epcs_key key;
    EXPECT_INT(epcs_keys_file_add(path, "Has Space", EPCS_ROLE_PARTNER, 0, token, &key, err, 512),
               -1);
    EXPECT_CONTAINS(err, "partner 'Has Space'");
    EXPECT_INT(epcs_keys_file_add(path, "kakao", EPCS_ROLE_NONE, 0, token, &key, err, 512), -1);
    EXPECT_CONTAINS(err, "role must be");
    EXPECT_INT(epcs_keys_file_add(path, "kakao", EPCS_ROLE_ADMIN, -1, token, &key, err, 512), -1);
    EXPECT_CONTAINS(err, "rate");
    EXPECT_INT(epcs_role_parse("root"), EPCS_ROLE_NONE);
    EXPECT_INT(epcs_role_parse("admin"), EPCS_ROLE_ADMIN);

    const char *bad_lines[][2] = {
        {"0123456789abcdef naver partner 00 0 2026-11-22T00:00:00Z\n", ":1: the token hash"},
        {"# comment\n\nxyz naver partner "
         "0000000000000000000000000000000000000000000000000000000000000000 0 t\n",
         ":3: the id must be"},
        {"0123456789abcdef naver root "
         "0000000000000000000000000000000000000000000000000000000000000000 0 t\n",
         ":1: role 'root'"},
        {"0123456789abcdef naver partner "
         "0000000000000000000000000000000000000000000000000000000000000000 fast t\n",
         ":1: rate 'fast'"},
        {"0123456789abcdef naver partner\n", ":1: expected 6 fields"},
        {"0123456789abcdef a partner "
         "0000000000000000000000000000000000000000000000000000000000000000 0 t\n"
         "0123456789abcdef b partner "
         "1111111111111111111111111111111111111111111111111111111111111111 0 t\n",
         "appears twice"},
    };
    for (size_t i = 0; i < sizeof(bad_lines) / sizeof(bad_lines[0]); i++) {
        write_file(bad_lines[i][0]);
        err[0] = '\0';
        EXPECT(load(err) == NULL);
        EXPECT_CONTAINS(err, bad_lines[i][1]);
    }
    unlink(path);
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

int main(void)
{
    if (mkdtemp(scratch) == NULL)
        return 1;
    snprintf(path, sizeof(path), "%s/keys", scratch);
    test_missing_file_is_empty();
    test_create_verify_revoke();
    test_refuses_bad_input();
    test_rate_bucket();
    char lock[300];
    snprintf(lock, sizeof(lock), "%s.lock", path);
    unlink(lock);
    unlink(path);
    rmdir(scratch);
    return epcs_test_report();
}
