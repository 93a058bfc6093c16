/* Subjects and collation for SORT and THREAD (subject.h). Placeholder
 * (issue 9): the thread helper builds it. */
#include <string.h>

#include "core/xmalloc.h"
#include "mime/subject.h"

char *mime_base_subject(const char *raw, size_t len, bool *is_reply_r)
{
	if (is_reply_r != NULL)
		*is_reply_r = false;
	return xstrndup(raw, len);
}

char *mime_casemap_key(const char *utf8, size_t len)
{
	return xstrndup(utf8, len);
}
