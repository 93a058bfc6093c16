/* Unit tests for IMAP URLs (src/imap/parse_url.c, RFC 5092 as RFC 4469
 * CATENATE and RFC 4467 URLAUTH use them). */
#include <stdlib.h>

#include "../test.h"
#include "imap/parse.h"
#include "imap/parse_url.h"
#include "mime/mime.h"

static void test_parse(void)
{
	static const struct {
		const char *in;
		int ret;
		const char *user, *host, *mailbox;
		uint32_t uidvalidity, uid;
		const char *section;
		bool partial;
		uint64_t off, len;
		const char *urlauth;
	} t[] = {
	    {"/INBOX/;UID=5", 0, NULL, NULL, "INBOX", 0, 5, NULL, false, 0, 0, NULL},
	    {"/inbox;uidvalidity=77/;uid=5/;section=header", 0, NULL, NULL, "inbox", 77, 5,
	     "header", false, 0, 0, NULL},
	    {"/a%20b/c;UIDVALIDITY=1/;UID=2/;SECTION=1.2.MIME/;PARTIAL=10.20", 0, NULL, NULL,
	     "a b/c", 1, 2, "1.2.MIME", true, 10, 20, NULL},
	    {"/x/;uid=3/;partial=100000", 0, NULL, NULL, "x", 0, 3, NULL, true, 100000, 0, NULL},
	    {"/%C3%A4/;UID=1/;SECTION=HEADER.FIELDS%20(FROM%20TO)", 0, NULL, NULL, "\xc3\xa4", 0, 1,
	     "HEADER.FIELDS (FROM TO)", false, 0, 0, NULL},
	    {"imap://joe@example.com/INBOX/;UID=9", 0, "joe", "example.com", "INBOX", 0, 9, NULL,
	     false, 0, 0, NULL},
	    {"imap://fred;AUTH=*@h:143/Drafts;UIDVALIDITY=385759045/;UID=20;URLAUTH=submit+fred:"
	     "internal:91354a473744909de610943775f92038",
	     0, "fred", "h", "Drafts", 385759045, 20, NULL, false, 0, 0,
	     ";URLAUTH=submit+fred:internal:91354a473744909de610943775f92038"},
	    {"imap://h/INBOX/;UID=1;EXPIRE=2030-01-01T00:00:00Z;URLAUTH=anonymous", 0, NULL, "h",
	     "INBOX", 0, 1, NULL, false, 0, 0, ";EXPIRE=2030-01-01T00:00:00Z;URLAUTH=anonymous"},
	    /* errors */
	    {"", -1, NULL, NULL, NULL, 0, 0, NULL, false, 0, 0, NULL},
	    {"INBOX/;UID=1", -1, NULL, NULL, NULL, 0, 0, NULL, false, 0, 0, NULL},
	    {"/INBOX", -1, NULL, NULL, NULL, 0, 0, NULL, false, 0, 0, NULL},
	    {"/INBOX/;UID=0", -1, NULL, NULL, NULL, 0, 0, NULL, false, 0, 0, NULL},
	    {"/INBOX/;UID=x", -1, NULL, NULL, NULL, 0, 0, NULL, false, 0, 0, NULL},
	    {"/INBOX/;UID=4294967296", -1, NULL, NULL, NULL, 0, 0, NULL, false, 0, 0, NULL},
	    {"/;UID=1", -1, NULL, NULL, NULL, 0, 0, NULL, false, 0, 0, NULL},
	    {"/INBOX;UIDVALIDITY=/;UID=1", -1, NULL, NULL, NULL, 0, 0, NULL, false, 0, 0, NULL},
	    {"/INBOX%0/;UID=1", -1, NULL, NULL, NULL, 0, 0, NULL, false, 0, 0, NULL},
	    {"/IN%00BOX/;UID=1", -1, NULL, NULL, NULL, 0, 0, NULL, false, 0, 0, NULL},
	    {"/INBOX/;UID=1/;SECTION=", -1, NULL, NULL, NULL, 0, 0, NULL, false, 0, 0, NULL},
	    {"/INBOX/;UID=1/;PARTIAL=1.0", -1, NULL, NULL, NULL, 0, 0, NULL, false, 0, 0, NULL},
	    {"/INBOX/;UID=1/;PARTIAL=.5", -1, NULL, NULL, NULL, 0, 0, NULL, false, 0, 0, NULL},
	    {"/INBOX/;UID=1/junk", -1, NULL, NULL, NULL, 0, 0, NULL, false, 0, 0, NULL},
	    {"imap:///INBOX/;UID=1", -1, NULL, NULL, NULL, 0, 0, NULL, false, 0, 0, NULL},
	    {"imap://h:99999/INBOX/;UID=1", -1, NULL, NULL, NULL, 0, 0, NULL, false, 0, 0, NULL},
	    {"imap://h", -1, NULL, NULL, NULL, 0, 0, NULL, false, 0, 0, NULL},
	    /* iauth (RFC 5092 3): "*" / 1*achar; no space, control or '@' */
	    {"imap://fred;AUTH=@h/INBOX/;UID=1", -1, NULL, NULL, NULL, 0, 0, NULL, false, 0, 0,
	     NULL},
	    {"imap://fred;AUTH=a b@h/INBOX/;UID=1", -1, NULL, NULL, NULL, 0, 0, NULL, false, 0, 0,
	     NULL},
	    {"imap://fred;AUTH=a\r\n* OK@h/INBOX/;UID=1", -1, NULL, NULL, NULL, 0, 0, NULL, false,
	     0, 0, NULL},
	    {"imap://fred;AUTH=x@y@h/INBOX/;UID=1", -1, NULL, NULL, NULL, 0, 0, NULL, false, 0, 0,
	     NULL},
	    {"imap://fred;AUTH=%4@h/INBOX/;UID=1", -1, NULL, NULL, NULL, 0, 0, NULL, false, 0, 0,
	     NULL},
	    {"imap://fred;AUTH=GSSAPI@h/INBOX/;UID=1", 0, "fred", "h", "INBOX", 0, 1, NULL, false,
	     0, 0, NULL},
	    {"imap://fred;AUTH=x%2Fy@h/INBOX/;UID=1", 0, "fred", "h", "INBOX", 0, 1, NULL, false, 0,
	     0, NULL},
	};
	for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
		struct imap_url u;
		int r = imap_url_parse(t[i].in, strlen(t[i].in), &u);
		CHECK_INT(i, r, t[i].ret);
		if (r != 0 || t[i].ret != 0)
			continue;
		CHECK_STR(i, u.user, t[i].user);
		CHECK_STR(i, u.host, t[i].host);
		CHECK_STR(i, u.mailbox, t[i].mailbox);
		CHECK_INT(i, u.uidvalidity, t[i].uidvalidity);
		CHECK_INT(i, u.uid, t[i].uid);
		CHECK_STR(i, u.section, t[i].section);
		CHECK_INT(i, u.partial, t[i].partial);
		CHECK_INT(i, u.partial_off, t[i].off);
		CHECK_INT(i, u.partial_len, t[i].len);
		CHECK_STR(i, u.urlauth, t[i].urlauth);
		imap_url_free(&u);
	}
}

static void test_section(void)
{
	static const struct {
		const char *in;
		int ret;
		int depth, what;
		bool fields;
	} t[] = {
	    {NULL, 0, 0, MIME_SECT_BODY, false},
	    {"HEADER", 0, 0, MIME_SECT_HEADER, false},
	    {"text", 0, 0, MIME_SECT_TEXT, false},
	    {"1", 0, 1, MIME_SECT_BODY, false},
	    {"1.2.MIME", 0, 2, MIME_SECT_MIME, false},
	    {"HEADER.FIELDS (FROM TO)", 0, 0, MIME_SECT_HEADER, true},
	    {"BOGUS", -1, 0, 0, false},
	    {"1]<0.5>", -1, 0, 0, false},
	    {"0", -1, 0, 0, false},
	};
	for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
		struct imap_fetch f;
		int r = imap_url_section(t[i].in, &f);
		CHECK_INT(i, r, t[i].ret);
		if (r != 0)
			continue;
		CHECK_INT(i, f.v[0].depth, t[i].depth);
		CHECK_INT(i, f.v[0].what, t[i].what);
		CHECK_INT(i, f.v[0].fields, t[i].fields);
		imap_fetch_free(&f);
	}
}

/* iurlauth (RFC 4467 3): EXPIRE, access identifier, mechanism, token, and
 * the rump the token signs. */
static void test_urlauth(void)
{
	static const char tok[] = "91354a473744909de610943775f92038";
	static const struct {
		const char *in;
		int ret;
		int64_t expire;
		const char *access, *mech, *token;
		size_t rump_len; /* 0: the whole URL minus ":mech:token" */
	} t[] = {
	    {"imap://h/INBOX/;UID=1;URLAUTH=anonymous", 0, 0, "anonymous", NULL, NULL, 0},
	    {"imap://h/INBOX/;UID=1;urlauth=AuthUser:INTERNAL:91354a473744909de610943775f92038", 0,
	     0, "authuser", "INTERNAL", tok, 0},
	    {"imap://h/INBOX/;UID=1;urlauth=user+a%40b.c:internal:91354a473744909de610943775f92038",
	     0, 0, "user+a@b.c", "internal", tok, 0},
	    {"imap://h/INBOX/;UID=1;urlauth=submit+fred", 0, 0, "submit+fred", NULL, NULL, 0},
	    {"imap://h/INBOX/;UID=1;EXPIRE=2030-01-01T00:00:00Z;URLAUTH=anonymous", 0, 1893456000,
	     "anonymous", NULL, NULL, 0},
	    {"imap://h/INBOX/;UID=1;EXPIRE=2030-01-01T02:00:00.5+02:00;URLAUTH=anonymous", 0,
	     1893456000, "anonymous", NULL, NULL, 0},
	    {"imap://h/INBOX/;UID=1;EXPIRE=1970-01-01T00:00:01-00:00;URLAUTH=anonymous", 0, 1,
	     "anonymous", NULL, NULL, 0},
	    /* errors */
	    {"imap://h/INBOX/;UID=1;URLAUTH=nobody", -1, 0, NULL, NULL, NULL, 0},
	    {"imap://h/INBOX/;UID=1;URLAUTH=user+", -1, 0, NULL, NULL, NULL, 0},
	    {"imap://h/INBOX/;UID=1;URLAUTH=anonymous:internal:0123", -1, 0, NULL, NULL, NULL, 0},
	    {"imap://h/INBOX/;UID=1;URLAUTH=anonymous:internal", -1, 0, NULL, NULL, NULL, 0},
	    {"imap://h/INBOX/;UID=1;URLAUTH=anonymous::91354a473744909de610943775f92038", -1, 0,
	     NULL, NULL, NULL, 0},
	    {"imap://h/INBOX/;UID=1;URLAUTH=anonymous:internal:91354a473744909de610943775f9203x",
	     -1, 0, NULL, NULL, NULL, 0},
	    {"imap://h/INBOX/;UID=1;EXPIRE=2030-13-01T00:00:00Z;URLAUTH=anonymous", -1, 0, NULL,
	     NULL, NULL, 0},
	    {"imap://h/INBOX/;UID=1;EXPIRE=2030-01-01;URLAUTH=anonymous", -1, 0, NULL, NULL, NULL,
	     0},
	    {"imap://h/INBOX/;UID=1;EXPIRE=2030-01-01T00:00:00Z", -1, 0, NULL, NULL, NULL, 0},
	    {"imap://h/INBOX/;UID=1;FOO=1", -1, 0, NULL, NULL, NULL, 0},
	};
	for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
		struct imap_url u;
		int r = imap_url_parse(t[i].in, strlen(t[i].in), &u);
		CHECK_INT(i, r, t[i].ret);
		if (r != 0 || t[i].ret != 0)
			continue;
		CHECK_INT(i, u.expire, t[i].expire);
		CHECK_STR(i, u.access, t[i].access);
		CHECK_STR(i, u.mech, t[i].mech);
		CHECK_STR(i, u.token, t[i].token);
		const char *c = strchr(strstr(t[i].in, "=") ? strrchr(t[i].in, '=') : t[i].in, ':');
		size_t want = c != NULL ? (size_t)(c - t[i].in) : strlen(t[i].in);
		CHECK_INT(i, u.rump_len, want);
		imap_url_free(&u);
	}
}

int main(void)
{
	test_run("parse", test_parse);
	test_run("section", test_section);
	test_run("urlauth", test_urlauth);
	return test_done("test_imap_url");
}
