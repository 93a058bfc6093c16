/* SEARCH arguments (RFC 9051 6.4.4 and 9: search-key; RFC 3501 6.4.4;
 * RFC 4731 ESEARCH RETURN options; RFC 5182 SEARCHRES "$" and SAVE;
 * RFC 7162 3.1.5 MODSEQ; RFC 5032 OLDER/YOUNGER). */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/xmalloc.h"
#include "imap/parse.h"
#include "imap/parse_int.h"

struct sctx {
	size_t keys, max_keys;
	const char *err;
};

static const struct {
	const char *name;
	enum imap_search_kind kind;
	unsigned flag;
} flag_keys[] = {
    {"ANSWERED", IMAP_SK_FLAG, IMAP_F_ANSWERED},
    {"DELETED", IMAP_SK_FLAG, IMAP_F_DELETED},
    {"DRAFT", IMAP_SK_FLAG, IMAP_F_DRAFT},
    {"FLAGGED", IMAP_SK_FLAG, IMAP_F_FLAGGED},
    {"SEEN", IMAP_SK_FLAG, IMAP_F_SEEN},
    {"RECENT", IMAP_SK_FLAG, IMAP_F_RECENT},
    {"UNANSWERED", IMAP_SK_UNFLAG, IMAP_F_ANSWERED},
    {"UNDELETED", IMAP_SK_UNFLAG, IMAP_F_DELETED},
    {"UNDRAFT", IMAP_SK_UNFLAG, IMAP_F_DRAFT},
    {"UNFLAGGED", IMAP_SK_UNFLAG, IMAP_F_FLAGGED},
    {"UNSEEN", IMAP_SK_UNFLAG, IMAP_F_SEEN},
    {"ALL", IMAP_SK_ALL, 0},
    {"NEW", IMAP_SK_NEW, 0},
    {"OLD", IMAP_SK_OLD, 0},
    {"SAVEDATESUPPORTED", IMAP_SK_SAVEDATESUPPORTED, 0}, /* RFC 8514 5 */
};

static const struct {
	const char *name;
	enum imap_search_kind kind;
} date_keys[] = {
    {"BEFORE", IMAP_SK_BEFORE}, {"ON", IMAP_SK_ON},
    {"SINCE", IMAP_SK_SINCE},   {"SENTBEFORE", IMAP_SK_SENTBEFORE},
    {"SENTON", IMAP_SK_SENTON}, {"SENTSINCE", IMAP_SK_SENTSINCE},
    /* RFC 8514 5 */
    {"SAVEDBEFORE", IMAP_SK_SAVEDBEFORE}, {"SAVEDON", IMAP_SK_SAVEDON},
    {"SAVEDSINCE", IMAP_SK_SAVEDSINCE},
};

/* header shortcuts: the key's name is the field's */
static const char *const addr_keys[] = {"FROM", "TO", "CC", "BCC", "SUBJECT"};

/* A search string: astring, valid UTF-8 (US-ASCII and UTF-8 are the only
 * charsets accepted, and both are UTF-8). */
static char *search_string(struct sctx *c, const struct imap_arg *a)
{
	const char *s;
	size_t n;
	if (!imap_arg_astring(a, &s, &n)) {
		c->err = "Invalid search string";
		return NULL;
	}
	if (!imap_utf8_valid(s, n)) {
		c->err = "Invalid UTF-8 in search string";
		return NULL;
	}
	return xstrndup(s, n);
}

static int parse_key(struct sctx *c, const struct imap_arg **ap, struct imap_search_key *k,
                     unsigned depth);

/* Keys up to EOL as the children of an AND node. */
static int parse_and(struct sctx *c, const struct imap_arg *a, struct imap_search_key *k,
                     unsigned depth)
{
	size_t cap = 0;
	k->kind = IMAP_SK_AND;
	if (a->type == IMAP_ARG_EOL) {
		c->err = "Missing search keys";
		return -1;
	}
	while (a->type != IMAP_ARG_EOL) {
		if (k->n_sub == cap) {
			cap = cap ? cap * 2 : 4;
			k->sub = xrealloc(k->sub, cap * sizeof *k->sub);
		}
		struct imap_search_key *sub = &k->sub[k->n_sub];
		memset(sub, 0, sizeof *sub);
		k->n_sub++;
		if (parse_key(c, &a, sub, depth) < 0)
			return -1;
	}
	return 0;
}

static int parse_key(struct sctx *c, const struct imap_arg **ap, struct imap_search_key *k,
                     unsigned depth)
{
	const struct imap_arg *a = *ap;
	if (++c->keys > c->max_keys) {
		c->err = "Too many search keys";
		return -1;
	}
	if (depth > IMAP_SEARCH_MAX_DEPTH) {
		c->err = "Too deep nesting of search keys";
		return -1;
	}
	if (a->type == IMAP_ARG_LIST) {
		*ap = a + 1;
		return parse_and(c, a->list, k, depth + 1);
	}
	if (a->type != IMAP_ARG_ATOM) {
		c->err = a->type == IMAP_ARG_EOL ? "Missing search key" : "Invalid search key";
		return -1;
	}
	a++;
	const struct imap_arg *key = a - 1;
	char c0 = key->str[0];

	/* sequence-set (RFC 9051 9: search-key =/ sequence-set) */
	if ((c0 >= '0' && c0 <= '9') || c0 == '*' || c0 == '$') {
		k->kind = IMAP_SK_SEQSET;
		if (imap_seqset_parse(key->str, key->len, 0, &k->set) < 0) {
			c->err = "Invalid sequence set";
			return -1;
		}
		*ap = a;
		return 0;
	}
	for (size_t i = 0; i < sizeof flag_keys / sizeof flag_keys[0]; i++)
		if (imap_arg_atom_is(key, flag_keys[i].name)) {
			k->kind = flag_keys[i].kind;
			k->flags = flag_keys[i].flag;
			*ap = a;
			return 0;
		}
	for (size_t i = 0; i < sizeof date_keys / sizeof date_keys[0]; i++)
		if (imap_arg_atom_is(key, date_keys[i].name)) {
			const char *s;
			size_t n;
			k->kind = date_keys[i].kind;
			if (!imap_arg_astring(a, &s, &n) || !imap_parse_date(s, n, &k->day)) {
				c->err = "Invalid search date";
				return -1;
			}
			*ap = a + 1;
			return 0;
		}
	for (size_t i = 0; i < sizeof addr_keys / sizeof addr_keys[0]; i++)
		if (imap_arg_atom_is(key, addr_keys[i])) {
			k->kind = IMAP_SK_HEADER;
			k->str2 = xstrdup(addr_keys[i]);
			if (i < 4)
				k->flags = IMAP_SK_F_ADDRESS;
			if ((k->str = search_string(c, a)) == NULL)
				return -1;
			*ap = a + 1;
			return 0;
		}
	if (imap_arg_atom_is(key, "BODY") || imap_arg_atom_is(key, "TEXT")) {
		k->kind = imap_arg_atom_is(key, "BODY") ? IMAP_SK_BODY : IMAP_SK_TEXT;
		if ((k->str = search_string(c, a)) == NULL)
			return -1;
		*ap = a + 1;
		return 0;
	}
	if (imap_arg_atom_is(key, "HEADER")) {
		/* HEADER header-fld-name astring */
		k->kind = IMAP_SK_HEADER;
		if ((k->str2 = search_string(c, a)) == NULL)
			return -1;
		for (const char *p = k->str2; *p != '\0'; p++)
			if ((unsigned char)*p <= 0x20 || (unsigned char)*p >= 0x7f || *p == ':') {
				c->err = "Invalid header field name";
				return -1;
			}
		if (k->str2[0] == '\0') {
			c->err = "Invalid header field name";
			return -1;
		}
		if ((k->str = search_string(c, a + 1)) == NULL)
			return -1;
		*ap = a + 2;
		return 0;
	}
	if (imap_arg_atom_is(key, "KEYWORD") || imap_arg_atom_is(key, "UNKEYWORD")) {
		/* flag-keyword = atom */
		k->kind = imap_arg_atom_is(key, "KEYWORD") ? IMAP_SK_KEYWORD : IMAP_SK_UNKEYWORD;
		if (a->type != IMAP_ARG_ATOM && a->type != IMAP_ARG_NIL) {
			c->err = "Invalid keyword";
			return -1;
		}
		for (size_t i = 0; i < a->len; i++)
			if (!imap_is_atom_char((unsigned char)a->str[i])) {
				c->err = "Invalid keyword";
				return -1;
			}
		k->str = xstrndup(a->str, a->len);
		*ap = a + 1;
		return 0;
	}
	if (imap_arg_atom_is(key, "LARGER") || imap_arg_atom_is(key, "SMALLER")) {
		k->kind = imap_arg_atom_is(key, "LARGER") ? IMAP_SK_LARGER : IMAP_SK_SMALLER;
		/* number64 in RFC 9051 */
		if (a->type != IMAP_ARG_ATOM ||
		    !imap_parse_u64(a->str, a->len, INT64_MAX, &k->num)) {
			c->err = "Invalid size";
			return -1;
		}
		*ap = a + 1;
		return 0;
	}
	if (imap_arg_atom_is(key, "OLDER") || imap_arg_atom_is(key, "YOUNGER")) {
		/* RFC 5032: nz-number seconds */
		k->kind = imap_arg_atom_is(key, "OLDER") ? IMAP_SK_OLDER : IMAP_SK_YOUNGER;
		uint32_t n;
		if (!imap_arg_number(a, &n) || n == 0) {
			c->err = "Invalid interval";
			return -1;
		}
		k->num = n;
		*ap = a + 1;
		return 0;
	}
	if (imap_arg_atom_is(key, "EMAILID") || imap_arg_atom_is(key, "THREADID")) {
		/* RFC 8474 6: "EMAILID" SP objectid, objectid =
		 * 1*255(ALPHA / DIGIT / "_" / "-") */
		k->kind = imap_arg_atom_is(key, "EMAILID") ? IMAP_SK_EMAILID : IMAP_SK_THREADID;
		if (a->type != IMAP_ARG_ATOM || a->len < 1 || a->len > 255) {
			c->err = "Invalid object id";
			return -1;
		}
		for (size_t i = 0; i < a->len; i++) {
			char ch = a->str[i];
			if (!((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') ||
			      (ch >= '0' && ch <= '9') || ch == '_' || ch == '-')) {
				c->err = "Invalid object id";
				return -1;
			}
		}
		k->str = xstrndup(a->str, a->len);
		*ap = a + 1;
		return 0;
	}
	if (imap_arg_atom_is(key, "UID")) {
		k->kind = IMAP_SK_UIDSET;
		if (a->type != IMAP_ARG_ATOM || imap_seqset_parse(a->str, a->len, 0, &k->set) < 0) {
			c->err = "Invalid UID set";
			return -1;
		}
		*ap = a + 1;
		return 0;
	}
	if (imap_arg_atom_is(key, "MODSEQ")) {
		/* "MODSEQ" [SP entry-name SP entry-type-req] SP
		 * mod-sequence-valzer (RFC 7162 7); the entry is accepted
		 * and ignored: flags have no per-flag modseq here. */
		k->kind = IMAP_SK_MODSEQ;
		if (a->type == IMAP_ARG_QUOTED || a->type == IMAP_ARG_LITERAL) {
			if (a->len < 8 || strncasecmp(a->str, "/flags/", 7) != 0 ||
			    !(imap_arg_atom_is(a + 1, "PRIV") ||
			      imap_arg_atom_is(a + 1, "SHARED") ||
			      imap_arg_atom_is(a + 1, "ALL"))) {
				c->err = "Invalid MODSEQ entry";
				return -1;
			}
			a += 2;
		}
		if (!imap_arg_number64(a, &k->num)) {
			c->err = "Invalid MODSEQ value";
			return -1;
		}
		*ap = a + 1;
		return 0;
	}
	if (imap_arg_atom_is(key, "NOT")) {
		k->kind = IMAP_SK_NOT;
		k->sub = xcalloc(1, sizeof *k->sub);
		k->n_sub = 1;
		*ap = a;
		return parse_key(c, ap, &k->sub[0], depth + 1);
	}
	if (imap_arg_atom_is(key, "OR")) {
		k->kind = IMAP_SK_OR;
		k->sub = xcalloc(2, sizeof *k->sub);
		k->n_sub = 2;
		*ap = a;
		if (parse_key(c, ap, &k->sub[0], depth + 1) < 0)
			return -1;
		return parse_key(c, ap, &k->sub[1], depth + 1);
	}
	c->err = "Unknown search key";
	return -1;
}

/* search-return-opts (RFC 4731 3, RFC 5182 2.1) */
static int return_opts(struct imap_search *s, const struct imap_arg *list, const char **err_r)
{
	s->esearch = true;
	for (const struct imap_arg *o = list; o->type != IMAP_ARG_EOL; o++) {
		bool *flag = imap_arg_atom_is(o, "MIN")     ? &s->ret_min
		             : imap_arg_atom_is(o, "MAX")   ? &s->ret_max
		             : imap_arg_atom_is(o, "ALL")   ? &s->ret_all
		             : imap_arg_atom_is(o, "COUNT") ? &s->ret_count
		             : imap_arg_atom_is(o, "SAVE")  ? &s->ret_save
		                                            : NULL;
		if (flag == NULL) {
			*err_r = "Unknown search return option";
			return -1;
		}
		*flag = true;
	}
	/* "RETURN ()" is RETURN (ALL) (RFC 4731 3.1) */
	if (list->type == IMAP_ARG_EOL)
		s->ret_all = true;
	return 0;
}

int imap_search_parse(const struct imap_arg *args, size_t max_keys, struct imap_search *s,
                      bool *bad_charset_r, const char **err_r)
{
	const struct imap_arg *a = args;
	struct sctx c = {0, max_keys, NULL};

	memset(s, 0, sizeof *s);
	*bad_charset_r = false;
	if (imap_arg_atom_is(a, "RETURN")) {
		if (a[1].type != IMAP_ARG_LIST) {
			*err_r = "Invalid search return options";
			return -1;
		}
		if (return_opts(s, a[1].list, err_r) < 0)
			return -1;
		a += 2;
	}
	if (imap_arg_atom_is(a, "CHARSET")) {
		const char *cs;
		size_t n;
		if (!imap_arg_astring(&a[1], &cs, &n)) {
			*err_r = "Invalid charset";
			return -1;
		}
		s->charset = cs;
		if (strcasecmp(cs, "UTF-8") != 0 && strcasecmp(cs, "US-ASCII") != 0) {
			/* NO [BADCHARSET (US-ASCII UTF-8)] (RFC 9051 6.4.4) */
			*bad_charset_r = true;
			*err_r = "Unsupported charset";
			return -1;
		}
		a += 2;
	}
	if (parse_and(&c, a, &s->root, 0) < 0) {
		imap_search_free(s);
		*err_r = c.err;
		return -1;
	}
	*err_r = NULL;
	return 0;
}

static void key_free(struct imap_search_key *k)
{
	for (size_t i = 0; i < k->n_sub; i++)
		key_free(&k->sub[i]);
	x_free(&k->sub);
	k->n_sub = 0;
	imap_seqset_free(&k->set);
	x_free(&k->str);
	x_free(&k->str2);
}

void imap_search_free(struct imap_search *s)
{
	key_free(&s->root);
}
