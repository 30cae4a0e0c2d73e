/*
 * validate_compile.c
 *		Turns a draft-07 schema (jsonb) into the EvcNode tree that
 *		validate.c walks.  Owns $id / $ref resolution: base URIs (RFC 3986),
 *		JSON pointers, plain-name fragments, and the documents that other
 *		schemas may refer to (evc.schema_documents, never the network).
 *
 * Every node, string and regex lives in the compiled schema's memory
 * context.  Nodes are keyed by the address of their jsonb container, so a
 * subschema reached twice (by nesting and by $ref) is compiled once, and
 * recursive schemas become cyclic graphs rather than infinite trees.
 */
#include "postgres.h"

#include "access/table.h"
#include "catalog/namespace.h"
#include "executor/spi.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/fmgrprotos.h"
#include "utils/hsearch.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"

#include "validate_int.h"

/* A schema resource: a document, or a subschema with an $id. */
typedef struct Resource
{
	char	   *uri;			/* absolute, no fragment; or "uri#anchor" */
	JV			value;
	char	   *base;			/* base URI in effect inside it */
} Resource;

typedef struct NodeMapEntry
{
	void	   *key;			/* address of the jsonb container */
	EvcNode    *node;
} NodeMapEntry;

typedef struct CompileCtx
{
	MemoryContext cxt;
	List	   *resources;
	List	   *fetched;		/* document URIs looked up already */
	HTAB	   *nodes;
	List	   *pending;		/* nodes whose $ref is not linked yet */
	List	   *linked;			/* nodes whose $ref is linked, in order */
	int			n_nodes;
} CompileCtx;

static EvcNode *compile_node(CompileCtx *cc, const JV *v, const char *base,
							 EvcNode *parent, const char *seg);

static void
schema_error(EvcNode *parent, const char *seg, const char *fmt, const char *arg)
{
	char	   *where = parent ? psprintf("%s/%s", evc_node_path(parent), seg) : pstrdup("#");

	ereport(ERROR,
			(errcode(EVC_ERRCODE_INVALID_SCHEMA),
			 errmsg("invalid JSON schema"),
			 errdetail("At schema path %s: %s.", where, psprintf(fmt, arg))));
}

/* ---------- URIs (RFC 3986 section 5) ---------- */

typedef struct UriParts
{
	char	   *scheme;
	char	   *authority;
	char	   *path;
	char	   *query;
	char	   *fragment;
} UriParts;

static void
uri_split(const char *s, UriParts *u)
{
	const char *p = s;
	const char *q;

	memset(u, 0, sizeof(*u));
	for (q = p; *q && (isalnum((unsigned char) *q) || *q == '+' || *q == '-' || *q == '.'); q++)
		;
	if (*q == ':' && q > p && isalpha((unsigned char) *p))
	{
		u->scheme = pnstrdup(p, q - p);
		p = q + 1;
	}
	if (p[0] == '/' && p[1] == '/')
	{
		p += 2;
		q = p + strcspn(p, "/?#");
		u->authority = pnstrdup(p, q - p);
		p = q;
	}
	q = p + strcspn(p, "?#");
	u->path = pnstrdup(p, q - p);
	p = q;
	if (*p == '?')
	{
		q = p + 1 + strcspn(p + 1, "#");
		u->query = pnstrdup(p + 1, q - p - 1);
		p = q;
	}
	if (*p == '#')
		u->fragment = pstrdup(p + 1);
}

static char *
remove_dot_segments(const char *path)
{
	StringInfoData out;
	const char *in = path;

	initStringInfo(&out);
	while (*in)
	{
		if (strncmp(in, "../", 3) == 0)
			in += 3;
		else if (strncmp(in, "./", 2) == 0)
			in += 2;
		else if (strncmp(in, "/./", 3) == 0)
			in += 2;
		else if (strcmp(in, "/.") == 0)
			in = "/";
		else if (strncmp(in, "/../", 4) == 0 || strcmp(in, "/..") == 0)
		{
			char	   *slash;

			in = (in[3] == '/') ? in + 3 : "/";
			slash = strrchr(out.data, '/');
			out.len = slash ? slash - out.data : 0;
			out.data[out.len] = '\0';
		}
		else if (strcmp(in, ".") == 0 || strcmp(in, "..") == 0)
			in += strlen(in);
		else
		{
			const char *next = strchr(in + 1, '/');
			int			n = next ? next - in : strlen(in);

			appendBinaryStringInfo(&out, in, n);
			in += n;
		}
	}
	return out.data;
}

static char *
uri_join(UriParts *u)
{
	StringInfoData s;

	initStringInfo(&s);
	if (u->scheme)
		appendStringInfo(&s, "%s:", u->scheme);
	if (u->authority)
		appendStringInfo(&s, "//%s", u->authority);
	appendStringInfoString(&s, u->path ? u->path : "");
	if (u->query)
		appendStringInfo(&s, "?%s", u->query);
	if (u->fragment)
		appendStringInfo(&s, "#%s", u->fragment);
	return s.data;
}

/* Resolve reference ref against base; the result keeps ref's fragment. */
static char *
uri_resolve(const char *base, const char *ref)
{
	UriParts	b,
				r,
				t;

	uri_split(base ? base : "", &b);
	uri_split(ref, &r);
	memset(&t, 0, sizeof(t));
	if (r.scheme)
	{
		t = r;
		t.path = remove_dot_segments(r.path);
	}
	else
	{
		t.scheme = b.scheme;
		if (r.authority)
		{
			t.authority = r.authority;
			t.path = remove_dot_segments(r.path);
			t.query = r.query;
		}
		else
		{
			t.authority = b.authority;
			if (r.path[0] == '\0')
			{
				t.path = b.path;
				t.query = r.query ? r.query : b.query;
			}
			else
			{
				if (r.path[0] == '/')
					t.path = remove_dot_segments(r.path);
				else
				{
					char	   *merged;
					char	   *slash = strrchr(b.path, '/');

					if (b.authority && b.path[0] == '\0')
						merged = psprintf("/%s", r.path);
					else if (slash)
						merged = psprintf("%.*s%s", (int) (slash - b.path + 1), b.path, r.path);
					else
						merged = pstrdup(r.path);
					t.path = remove_dot_segments(merged);
				}
				t.query = r.query;
			}
		}
		t.fragment = r.fragment;
	}
	return uri_join(&t);
}

/* The URI without its fragment. */
static char *
uri_strip_fragment(const char *uri)
{
	const char *hash = strchr(uri, '#');

	return hash ? pnstrdup(uri, hash - uri) : pstrdup(uri);
}

/* ---------- resources ---------- */

static bool
get_string_member(const JV *obj, const char *key, char **out)
{
	JV			v;

	if (obj->type != JV_OBJECT || !evc_jv_object_get(obj, key, strlen(key), &v) ||
		v.type != JV_STRING)
		return false;
	*out = pnstrdup(v.u.str, v.len);
	return true;
}

static void
add_resource(CompileCtx *cc, const char *uri, const JV *v, const char *base)
{
	Resource   *r = palloc(sizeof(Resource));

	r->uri = pstrdup(uri);
	r->value = *v;
	r->base = pstrdup(base);
	cc->resources = lappend(cc->resources, r);
}

/* Register the $id's found in subschema positions of v, depth first. */
static void
collect_ids(CompileCtx *cc, const JV *v, const char *base)
{
	static const char *const schema_kw[] = {"items", "additionalItems", "contains",
		"additionalProperties", "propertyNames", "if", "then", "else", "not", NULL};
	static const char *const map_kw[] = {"properties", "patternProperties",
	"definitions", "dependencies", NULL};
	static const char *const list_kw[] = {"items", "allOf", "anyOf", "oneOf", NULL};
	char	   *id;
	char	   *ref;
	JV			child,
				k,
				e;
	JvIter		it;

	if (v->type != JV_OBJECT)
		return;
	check_stack_depth();
	if (!get_string_member(v, "$ref", &ref) && get_string_member(v, "$id", &id))
	{
		char	   *abs = uri_resolve(base, id);

		if (id[0] == '#')
			add_resource(cc, abs, v, base);
		else
		{
			base = uri_strip_fragment(abs);
			add_resource(cc, base, v, base);
		}
	}
	for (int i = 0; schema_kw[i]; i++)
		if (evc_jv_object_get(v, schema_kw[i], strlen(schema_kw[i]), &child))
			collect_ids(cc, &child, base);
	for (int i = 0; map_kw[i]; i++)
		if (evc_jv_object_get(v, map_kw[i], strlen(map_kw[i]), &child) &&
			child.type == JV_OBJECT)
		{
			jv_iter_init(&it, &child);
			while (jv_iter_next(&it, &k, &e))
				collect_ids(cc, &e, base);
		}
	for (int i = 0; list_kw[i]; i++)
		if (evc_jv_object_get(v, list_kw[i], strlen(list_kw[i]), &child) &&
			child.type == JV_ARRAY)
		{
			jv_iter_init(&it, &child);
			while (jv_iter_next(&it, &k, &e))
				collect_ids(cc, &e, base);
		}
}

static void
add_document(CompileCtx *cc, const char *uri, Jsonb *doc)
{
	JV			root;

	evc_jv_root(doc, &root);
	add_resource(cc, uri, &root, uri);
	collect_ids(cc, &root, uri);
}

static Resource *
find_resource(CompileCtx *cc, const char *uri)
{
	ListCell   *lc;

	foreach(lc, cc->resources)
	{
		Resource   *r = lfirst(lc);

		if (strcmp(r->uri, uri) == 0)
			return r;
	}
	return NULL;
}

/*
 * A document from evc.schema_documents, read as the table's owner, or NULL.
 * The result lives in the caller's context only until SPI_finish, so the
 * caller copies it.
 */
static Jsonb *
lookup_document_table(const char *uri, MemoryContext cxt)
{
	Oid			nsp = get_namespace_oid("evc", true);
	Jsonb	   *doc = NULL;
	Oid			argtypes[1] = {TEXTOID};
	Datum		args[1];
	Relation	rel;
	Oid			save_user;
	int			save_sec;

	if (!OidIsValid(nsp) || !OidIsValid(get_relname_relid("schema_documents", nsp)))
		return NULL;

	args[0] = CStringGetTextDatum(uri);
	/* read as the table owner: the registry's tables are not public */
	rel = table_open(get_relname_relid("schema_documents", nsp), AccessShareLock);
	GetUserIdAndSecContext(&save_user, &save_sec);
	SetUserIdAndSecContext(rel->rd_rel->relowner, save_sec | SECURITY_LOCAL_USERID_CHANGE);
	table_close(rel, NoLock);
	SPI_connect();
	if (SPI_execute_with_args("SELECT document FROM evc.schema_documents WHERE uri = $1",
							  1, argtypes, args, NULL, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not read evc.schema_documents");
	if (SPI_processed == 1)
	{
		bool		isnull;
		Datum		d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);

		if (!isnull)
		{
			MemoryContext old = MemoryContextSwitchTo(cxt);

			doc = DatumGetJsonbPCopy(d);
			MemoryContextSwitchTo(old);
		}
	}
	SPI_finish();
	SetUserIdAndSecContext(save_user, save_sec);
	return doc;
}

/*
 * Where documents come from.  The fuzz targets (test/fuzz), which run
 * without a server and so without tables, put their own lookup here.
 */
EvcDocumentLookup evc_schema_document_lookup = lookup_document_table;

/*
 * A document another schema refers to.  The copy is made in the compiled
 * schema's context so that it lives as long.
 */
static bool
fetch_document(CompileCtx *cc, const char *uri)
{
	Jsonb	   *doc;

	if (list_member(cc->fetched, makeString((char *) uri)))
		return false;
	cc->fetched = lappend(cc->fetched, makeString(pstrdup(uri)));
	doc = evc_schema_document_lookup(uri, cc->cxt);
	if (doc == NULL)
		return false;
	add_document(cc, uri, doc);
	return true;
}

/* Decode one JSON pointer token (percent-decoding first, then ~1 and ~0). */
static char *
pointer_token(const char *s, int len)
{
	StringInfoData out;
	char	   *pct;
	int			i;

	initStringInfo(&out);
	for (i = 0; i < len; i++)
	{
		if (s[i] == '%' && i + 2 < len && isxdigit((unsigned char) s[i + 1]) &&
			isxdigit((unsigned char) s[i + 2]))
		{
			char		hex[3] = {s[i + 1], s[i + 2], 0};

			appendStringInfoChar(&out, (char) strtol(hex, NULL, 16));
			i += 2;
		}
		else
			appendStringInfoChar(&out, s[i]);
	}
	pct = out.data;
	initStringInfo(&out);
	for (i = 0; pct[i]; i++)
	{
		if (pct[i] == '~' && pct[i + 1] == '1')
		{
			appendStringInfoChar(&out, '/');
			i++;
		}
		else if (pct[i] == '~' && pct[i + 1] == '0')
		{
			appendStringInfoChar(&out, '~');
			i++;
		}
		else
			appendStringInfoChar(&out, pct[i]);
	}
	return out.data;
}

/*
 * Resolve an absolute $ref to a value and the base URI in effect there.
 * False when it cannot be found.
 */
static bool
resolve_ref(CompileCtx *cc, const char *uri, JV *out, char **out_base)
{
	char	   *doc_uri = uri_strip_fragment(uri);
	const char *frag = strchr(uri, '#');
	Resource   *r;
	JV			cur;
	char	   *base;
	const char *p;

	frag = frag ? frag + 1 : "";
	if (frag[0] != '\0' && frag[0] != '/')
	{
		/* plain-name fragment: an "$id": "#name" somewhere */
		r = find_resource(cc, uri);
		if (r == NULL && fetch_document(cc, doc_uri))
			r = find_resource(cc, uri);
		if (r == NULL)
			return false;
		*out = r->value;
		*out_base = r->base;
		return true;
	}
	r = find_resource(cc, doc_uri);
	if (r == NULL && fetch_document(cc, doc_uri))
		r = find_resource(cc, doc_uri);
	if (r == NULL)
		return false;
	cur = r->value;
	base = r->base;
	for (p = frag; *p == '/';)
	{
		const char *start = p + 1;
		const char *end = strchr(start, '/');
		char	   *tok;
		char	   *id;
		JV			next;

		if (end == NULL)
			end = start + strlen(start);
		tok = pointer_token(start, end - start);
		if (cur.type == JV_OBJECT)
		{
			if (!evc_jv_object_get(&cur, tok, strlen(tok), &next))
				return false;
		}
		else if (cur.type == JV_ARRAY)
		{
			char	   *endp;
			long		idx = strtol(tok, &endp, 10);

			if (*tok == '\0' || *endp != '\0' || !evc_jv_array_get(&cur, (int) idx, &next))
				return false;
		}
		else
			return false;
		if (next.type == JV_OBJECT && get_string_member(&next, "$id", &id) &&
			id[0] != '#' && *end != '\0')
			base = uri_strip_fragment(uri_resolve(base, id));
		cur = next;
		p = end;
	}
	*out = cur;
	*out_base = base;
	return true;
}

/* ---------- nodes ---------- */

static EvcNode *
new_node(CompileCtx *cc, EvcNode *parent, const char *seg)
{
	EvcNode    *n = palloc0(sizeof(EvcNode));

	n->parent = parent;
	n->seg = seg;
	n->min_length = n->max_length = -1;
	n->min_items = n->max_items = -1;
	n->min_props = n->max_props = -1;
	cc->n_nodes++;
	return n;
}

static char *
escape_token(const char *s, int len)
{
	StringInfoData out;

	initStringInfo(&out);
	for (int i = 0; i < len; i++)
	{
		if (s[i] == '~')
			appendStringInfoString(&out, "~0");
		else if (s[i] == '/')
			appendStringInfoString(&out, "~1");
		else
			appendStringInfoChar(&out, s[i]);
	}
	return out.data;
}

/*
 * A count (minLength, maxItems, ...): a non-negative integer, which draft-07
 * lets a schema write as 2.0 or 1e3, and which may be larger than any count.
 * Read exactly, never through float8: 2.0000000000000000001 is not an
 * integer, and 1e400 is one (kept as PG_INT32_MAX, more than jsonb holds).
 */
static int32
count_keyword(const JV *v, EvcNode *parent, const char *kw)
{
	EvcNum		x;
	Numeric		num;

	if (v->type != JV_NUMBER)
		schema_error(parent, kw, "keyword \"%s\" needs a non-negative integer", kw);
	if (jv_num_exact(v, &x))
	{
		if (x.scale != 0 || x.mant < 0)
			schema_error(parent, kw, "keyword \"%s\" needs a non-negative integer", kw);
		return x.mant > PG_INT32_MAX ? PG_INT32_MAX : (int32) x.mant;
	}

	/*
	 * No exact form: an integer among these is at least 10^18, so the only
	 * questions are whether it is an integer and whether it is negative.
	 */
	num = evc_jv_num_numeric(v);
	if (DatumGetInt32(DirectFunctionCall1(numeric_min_scale, NumericGetDatum(num))) != 0 ||
		DatumGetInt32(DirectFunctionCall2(numeric_cmp, NumericGetDatum(num),
										  NumericGetDatum(int64_to_numeric(0)))) < 0)
		schema_error(parent, kw, "keyword \"%s\" needs a non-negative integer", kw);
	return PG_INT32_MAX;
}

/* A numeric bound: kept as numeric, and in exact form when it has one. */
static Numeric
number_keyword(const JV *v, EvcNode *node, const char *kw, int which)
{
	if (v->type != JV_NUMBER)
		schema_error(node, kw, "keyword \"%s\" needs a number", kw);
	if (jv_num_exact(v, &node->num_fast[which]))
		node->num_fast_ok |= 1 << which;
	return v->u.num;
}

static uint8
type_bit(const JV *v, EvcNode *node)
{
	static const char *const names[] = {"null", "boolean", "object", "array",
	"number", "string", "integer"};

	if (v->type == JV_STRING)
		for (int i = 0; i < lengthof(names); i++)
			if (v->len == strlen(names[i]) && memcmp(v->u.str, names[i], v->len) == 0)
				return 1 << i;
	schema_error(node, "type", "%s", "\"type\" must name null, boolean, object, array, number, string or integer");
	return 0;
}

static EvcNode **
compile_list(CompileCtx *cc, const JV *v, EvcNode *node, const char *kw, int *n,
			 const char *base)
{
	EvcNode   **list;
	JvIter		it;
	JV			k = {0},
				e;
	int			i = 0;

	if (v->type != JV_ARRAY || v->len == 0)
		schema_error(node, kw, "keyword \"%s\" needs a non-empty array of schemas", kw);
	list = palloc(sizeof(EvcNode *) * v->len);
	jv_iter_init(&it, v);
	while (jv_iter_next(&it, &k, &e))
	{
		list[i] = compile_node(cc, &e, base, node, psprintf("%s/%d", kw, i));
		i++;
	}
	*n = i;
	return list;
}

static EvcProp *
compile_names(const JV *v, EvcNode *node, const char *kw, int *n)
{
	EvcProp    *names = palloc(sizeof(EvcProp) * Max(v->len, 1));
	JvIter		it;
	JV			k = {0},
				e;
	int			count = 0;

	if (v->type != JV_ARRAY)
		schema_error(node, kw, "keyword \"%s\" needs an array of strings", kw);
	jv_iter_init(&it, v);
	while (jv_iter_next(&it, &k, &e))
	{
		int			j;

		if (e.type != JV_STRING)
			schema_error(node, kw, "keyword \"%s\" needs an array of strings", kw);
		/* insertion sort into jsonb key order, dropping duplicates */
		for (j = count; j > 0 && jv_key_cmp(names[j - 1].name, names[j - 1].len, e.u.str, e.len) > 0; j--)
			;
		if (j > 0 && jv_key_cmp(names[j - 1].name, names[j - 1].len, e.u.str, e.len) == 0)
			continue;
		memmove(&names[j + 1], &names[j], sizeof(EvcProp) * (count - j));
		names[j].name = e.u.str;
		names[j].len = e.len;
		names[j].schema = NULL;
		names[j].required = false;
		count++;
	}
	*n = count;
	return names;
}

static void
compile_object_keywords(CompileCtx *cc, EvcNode *node, const char *kw, const JV *val,
						const char *base)
{
	JvIter		it;
	JV			k = {0},
				e;
	int			i = 0;

	if (val->type != JV_OBJECT)
		schema_error(node, kw, "keyword \"%s\" needs an object", kw);
	if (strcmp(kw, "properties") == 0)
	{
		node->props = palloc(sizeof(EvcProp) * Max(val->len, 1));
		jv_iter_init(&it, val);
		while (jv_iter_next(&it, &k, &e))
		{
			node->props[i].name = k.u.str;
			node->props[i].len = k.len;
			node->props[i].required = false;
			node->props[i].schema = compile_node(cc, &e, base, node,
												 psprintf("properties/%s", escape_token(k.u.str, k.len)));
			i++;
		}
		node->n_props = i;
	}
	else if (strcmp(kw, "patternProperties") == 0)
	{
		node->pat_props = palloc(sizeof(EvcPatProp) * Max(val->len, 1));
		jv_iter_init(&it, val);
		while (jv_iter_next(&it, &k, &e))
		{
			char	   *msg;
			EvcPatProp *pp = &node->pat_props[i];

			pp->source = pnstrdup(k.u.str, k.len);
			pp->re = evc_regex_compile(k.u.str, k.len, &msg);
			if (pp->re == NULL)
				schema_error(node, "patternProperties", "%s", msg);
			pp->schema = compile_node(cc, &e, base, node,
									  psprintf("patternProperties/%s", escape_token(k.u.str, k.len)));
			i++;
		}
		node->n_pat_props = i;
	}
	else if (strcmp(kw, "dependencies") == 0)
	{
		node->deps = palloc0(sizeof(EvcDep) * Max(val->len, 1));
		jv_iter_init(&it, val);
		while (jv_iter_next(&it, &k, &e))
		{
			EvcDep	   *d = &node->deps[i];

			d->name = k.u.str;
			d->len = k.len;
			if (e.type == JV_ARRAY)
				d->required = compile_names(&e, node, "dependencies", &d->n_required);
			else
				d->schema = compile_node(cc, &e, base, node,
										 psprintf("dependencies/%s", escape_token(k.u.str, k.len)));
			i++;
		}
		node->n_deps = i;
	}
	else						/* definitions: compiled for their errors and for $ref */
	{
		jv_iter_init(&it, val);
		while (jv_iter_next(&it, &k, &e))
			(void) compile_node(cc, &e, base, node,
								psprintf("definitions/%s", escape_token(k.u.str, k.len)));
	}
}

static void
compile_keyword(CompileCtx *cc, EvcNode *node, const JV *key, const JV *val,
				const char *base)
{
	char		kw[32];
	char	   *msg;

	if (key->len >= sizeof(kw))
		return;					/* no keyword is that long */
	memcpy(kw, key->u.str, key->len);
	kw[key->len] = '\0';

#define SUB(field) node->field = compile_node(cc, val, base, node, pstrdup(kw))
	if (strcmp(kw, "type") == 0)
	{
		if (val->type == JV_ARRAY)
		{
			JvIter		it;
			JV			k = {0},
						e;

			jv_iter_init(&it, val);
			while (jv_iter_next(&it, &k, &e))
				node->types |= type_bit(&e, node);
		}
		else
			node->types = type_bit(val, node);
	}
	else if (strcmp(kw, "enum") == 0)
	{
		JvIter		it;
		JV			k;

		if (val->type != JV_ARRAY)
			schema_error(node, kw, "%s", "keyword \"enum\" needs an array");
		node->enum_vals = palloc(sizeof(JV) * Max(val->len, 1));
		jv_iter_init(&it, val);
		while (jv_iter_next(&it, &k, &node->enum_vals[node->n_enum]))
			node->n_enum++;
	}
	else if (strcmp(kw, "const") == 0)
	{
		node->has_const = true;
		node->const_val = *val;
	}
	else if (strcmp(kw, "minimum") == 0)
		node->minimum = number_keyword(val, node, kw, EVC_NB_MINIMUM);
	else if (strcmp(kw, "maximum") == 0)
		node->maximum = number_keyword(val, node, kw, EVC_NB_MAXIMUM);
	else if (strcmp(kw, "exclusiveMinimum") == 0)
		node->exclusive_minimum = number_keyword(val, node, kw, EVC_NB_XMINIMUM);
	else if (strcmp(kw, "exclusiveMaximum") == 0)
		node->exclusive_maximum = number_keyword(val, node, kw, EVC_NB_XMAXIMUM);
	else if (strcmp(kw, "multipleOf") == 0)
	{
		node->multiple_of = number_keyword(val, node, kw, EVC_NB_MULTIPLE_OF);
		if (numeric_is_nan(node->multiple_of) ||
			DatumGetInt32(DirectFunctionCall2(numeric_cmp, NumericGetDatum(node->multiple_of),
											  NumericGetDatum(int64_to_numeric(0)))) <= 0)
			schema_error(node, kw, "%s", "keyword \"multipleOf\" needs a number greater than 0");
	}
	else if (strcmp(kw, "minLength") == 0)
		node->min_length = count_keyword(val, node, kw);
	else if (strcmp(kw, "maxLength") == 0)
		node->max_length = count_keyword(val, node, kw);
	else if (strcmp(kw, "minItems") == 0)
		node->min_items = count_keyword(val, node, kw);
	else if (strcmp(kw, "maxItems") == 0)
		node->max_items = count_keyword(val, node, kw);
	else if (strcmp(kw, "minProperties") == 0)
		node->min_props = count_keyword(val, node, kw);
	else if (strcmp(kw, "maxProperties") == 0)
		node->max_props = count_keyword(val, node, kw);
	else if (strcmp(kw, "pattern") == 0)
	{
		if (val->type != JV_STRING)
			schema_error(node, kw, "%s", "keyword \"pattern\" needs a string");
		node->pattern_src = pnstrdup(val->u.str, val->len);
		node->pattern = evc_regex_compile(val->u.str, val->len, &msg);
		if (node->pattern == NULL)
			schema_error(node, kw, "%s", msg);
	}
	else if (strcmp(kw, "format") == 0)
	{
		if (val->type != JV_STRING)
			schema_error(node, kw, "%s", "keyword \"format\" needs a string");
		node->format = pnstrdup(val->u.str, val->len);
		node->format_fn = evc_format_lookup(node->format);
		if (node->format_fn == NULL)
			node->format = NULL;	/* unknown formats are annotations */
	}
	else if (strcmp(kw, "items") == 0)
	{
		if (val->type == JV_ARRAY)
		{
			JvIter		it;
			JV			k = {0},
						e;
			int			i = 0;

			node->items_list = palloc(sizeof(EvcNode *) * Max(val->len, 1));
			jv_iter_init(&it, val);
			while (jv_iter_next(&it, &k, &e))
			{
				node->items_list[i] = compile_node(cc, &e, base, node, psprintf("items/%d", i));
				i++;
			}
			node->n_items_list = i;
		}
		else
			SUB(items);
	}
	else if (strcmp(kw, "additionalItems") == 0)
		SUB(additional_items);
	else if (strcmp(kw, "contains") == 0)
		SUB(contains);
	else if (strcmp(kw, "uniqueItems") == 0)
		node->unique_items = (val->type == JV_BOOL && val->u.boolean);
	else if (strcmp(kw, "additionalProperties") == 0)
		SUB(additional_props);
	else if (strcmp(kw, "propertyNames") == 0)
		SUB(property_names);
	else if (strcmp(kw, "required") == 0)
		node->required = compile_names(val, node, kw, &node->n_required);
	else if (strcmp(kw, "properties") == 0 || strcmp(kw, "patternProperties") == 0 ||
			 strcmp(kw, "dependencies") == 0 || strcmp(kw, "definitions") == 0)
		compile_object_keywords(cc, node, kw, val, base);
	else if (strcmp(kw, "if") == 0)
		SUB(if_);
	else if (strcmp(kw, "then") == 0)
		SUB(then_);
	else if (strcmp(kw, "else") == 0)
		SUB(else_);
	else if (strcmp(kw, "not") == 0)
		SUB(not_);
	else if (strcmp(kw, "allOf") == 0)
		node->all_of = compile_list(cc, val, node, "allOf", &node->n_all_of,
									 base);
	else if (strcmp(kw, "anyOf") == 0)
		node->any_of = compile_list(cc, val, node, "anyOf", &node->n_any_of,
									 base);
	else if (strcmp(kw, "oneOf") == 0)
		node->one_of = compile_list(cc, val, node, "oneOf", &node->n_one_of,
									 base);
	/* anything else is an annotation or an unknown keyword: ignored */
#undef SUB
}

/* Which properties are required, and whether all required names are properties. */
static void
mark_required_props(EvcNode *n)
{
	int			p = 0;
	int			found = 0;

	/* both lists are in jsonb key order: merge */
	for (int r = 0; r < n->n_required; r++)
	{
		int			c = -1;

		while (p < n->n_props &&
			   (c = jv_key_cmp(n->props[p].name, n->props[p].len,
							   n->required[r].name, n->required[r].len)) < 0)
			p++;
		if (p < n->n_props && c == 0)
		{
			n->props[p].required = true;
			found++;
		}
	}
	n->required_in_props = (found == n->n_required);
	n->closed = n->additional_props && n->additional_props->is_bool &&
		!n->additional_props->bool_value && n->n_pat_props == 0;
}

/*
 * Room for the keys of a few objects (EvcShapeSet), each: the names of the
 * properties, and a little more for a key or two that is not one of them.
 * Objects with longer keys are simply not remembered.
 */
static void
alloc_shape(EvcNode *n)
{
	uint32		cap = 64;

	if (n->n_props == 0 || n->n_props > PG_INT8_MAX)
		return;
	for (int i = 0; i < n->n_props; i++)
		cap += n->props[i].len;
	n->shapes = palloc0(sizeof(EvcShapeSet));
	for (int i = 0; i < EVC_SHAPE_SLOTS; i++)
	{
		n->shapes->slot[i] = palloc0(offsetof(EvcShape, keys) + cap);
		n->shapes->slot[i]->keys_cap = cap;
	}
}

/*
 * When every bound is an integer and there is no multipleOf, an integer is
 * within the bounds when it is within one window [int_lo, int_hi], which
 * evaluation checks inline before it calls eval_number.
 */
static void
set_int_window(EvcNode *n)
{
	Numeric		bounds[EVC_NB_MULTIPLE_OF] = {n->minimum, n->maximum,
	n->exclusive_minimum, n->exclusive_maximum};
	int64		lo = PG_INT64_MIN;
	int64		hi = PG_INT64_MAX;

	if (n->multiple_of)
		return;
	for (int b = 0; b < lengthof(bounds); b++)
	{
		const EvcNum *x = &n->num_fast[b];

		if (bounds[b] == NULL)
			continue;
		if (!(n->num_fast_ok & (1 << b)) || x->scale != 0)
			return;
		/* exact forms are below 10^18 in magnitude: the +1 and -1 cannot overflow */
		switch (b)
		{
			case EVC_NB_MINIMUM:
				lo = Max(lo, x->mant);
				break;
			case EVC_NB_MAXIMUM:
				hi = Min(hi, x->mant);
				break;
			case EVC_NB_XMINIMUM:
				lo = Max(lo, x->mant + 1);
				break;
			case EVC_NB_XMAXIMUM:
				hi = Min(hi, x->mant - 1);
				break;
		}
	}
	n->int_window = true;
	n->int_lo = lo;
	n->int_hi = hi;
}

static uint8
keyword_groups(EvcNode *n)
{
	uint8		kw = 0;

	if (n->minimum || n->maximum || n->exclusive_minimum || n->exclusive_maximum ||
		n->multiple_of)
		kw |= EVC_KW_NUMBER;
	if (n->min_length >= 0 || n->max_length >= 0 || n->pattern || n->format_fn)
		kw |= EVC_KW_STRING;
	if (n->items || n->items_list || n->contains || n->unique_items ||
		n->min_items >= 0 || n->max_items >= 0)
		kw |= EVC_KW_ARRAY;
	if (n->props || n->pat_props || n->additional_props || n->property_names)
		kw |= EVC_KW_MEMBERS | EVC_KW_OBJECT;
	if (n->n_required > 0 || n->n_deps > 0 || n->min_props >= 0 || n->max_props >= 0)
		kw |= EVC_KW_OBJECT;
	if (n->all_of || n->any_of || n->one_of || n->not_ || (n->if_ && (n->then_ || n->else_)))
		kw |= EVC_KW_COMB;
	if (n->enum_vals || n->has_const)
		kw |= EVC_KW_VALUE;
	return kw;
}

/*
 * Compile v found at parent/seg.  base is the base URI in effect at v's
 * parent; v's own $id may change it for v and below.
 */
static EvcNode *
compile_node(CompileCtx *cc, const JV *v, const char *base, EvcNode *parent, const char *seg)
{
	EvcNode    *node;
	NodeMapEntry *ent;
	bool		found;
	char	   *ref;
	char	   *id;
	JvIter		it;
	JV			k = {0},
				e;

	check_stack_depth();
	CHECK_FOR_INTERRUPTS();

	if (v->type == JV_BOOL)
	{
		node = new_node(cc, parent, seg);
		node->is_bool = true;
		node->bool_value = v->u.boolean;
		node->src = *v;
		return node;
	}
	if (v->type != JV_OBJECT)
		schema_error(parent, seg, "a schema must be an object or a boolean, not %s",
					 evc_jv_type_name(v));

	ent = hash_search(cc->nodes, &v->u.jc, HASH_ENTER, &found);
	if (found)
		return ent->node;
	node = new_node(cc, parent, seg);
	node->src = *v;
	ent->node = node;

	if (get_string_member(v, "$ref", &ref))
	{
		/* draft-07: $ref makes every sibling keyword, $id included, ignored */
		node->ref_uri = uri_resolve(base, ref);
		node->costly = true;
		cc->pending = lappend(cc->pending, node);
		return node;
	}
	if (get_string_member(v, "$id", &id) && id[0] != '#')
		base = uri_strip_fragment(uri_resolve(base, id));

	jv_iter_init(&it, v);
	while (jv_iter_next(&it, &k, &e))
		compile_keyword(cc, node, &k, &e, base);
	node->kw = keyword_groups(node);
	set_int_window(node);
	node->costly = node->pattern || node->format_fn || node->multiple_of ||
		(node->kw & EVC_KW_COMB);
	mark_required_props(node);
	alloc_shape(node);
	return node;
}

/* Link every pending $ref; compiling a target may add more. */
static void
link_refs(CompileCtx *cc)
{
	while (cc->pending != NIL)
	{
		EvcNode    *node = linitial(cc->pending);
		JV			target;
		char	   *base;

		cc->pending = list_delete_first(cc->pending);
		if (!resolve_ref(cc, node->ref_uri, &target, &base))
			ereport(ERROR,
					(errcode(EVC_ERRCODE_INVALID_SCHEMA),
					 errmsg("invalid JSON schema"),
					 errdetail("At schema path %s: $ref \"%s\" cannot be resolved.",
							   evc_node_path(node), node->ref_uri),
					 errhint("Schemas are never fetched from the network: add the referenced document to evc.schema_documents.")));
		node->ref = compile_node(cc, &target, base, NULL, pstrdup(node->ref_uri));
		cc->linked = lappend(cc->linked, node);
	}
}

/* A chain of $refs that only leads to itself can never be evaluated. */
static void
check_ref_chains(CompileCtx *cc)
{
	ListCell   *lc;

	foreach(lc, cc->linked)
	{
		EvcNode    *start = lfirst(lc);
		EvcNode    *n = start;
		int			steps = 0;

		while (n->ref != NULL)
		{
			n = n->ref;
			if (n == start || ++steps > cc->n_nodes)
				ereport(ERROR,
						(errcode(EVC_ERRCODE_REF_CYCLE),
						 errmsg("invalid JSON schema"),
						 errdetail("At schema path %s: $ref \"%s\" refers back to itself.",
								   evc_node_path(start), start->ref_uri)));
		}
	}
}

EvcCompiledSchema *
evc_schema_compile(Jsonb *schema, const char *base_uri, MemoryContext cxt)
{
	MemoryContext old = MemoryContextSwitchTo(cxt);
	EvcCompiledSchema *cs = palloc0(sizeof(EvcCompiledSchema));
	CompileCtx	cc;
	HASHCTL		hctl;
	Jsonb	   *copy;
	JV			root;
	char	   *base;

	memset(&cc, 0, sizeof(cc));
	cc.cxt = cxt;
	hctl.keysize = sizeof(void *);
	hctl.entrysize = sizeof(NodeMapEntry);
	hctl.hcxt = cxt;
	cc.nodes = hash_create("evcollector schema nodes", 64, &hctl,
						   HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);

	copy = palloc(VARSIZE(schema));
	memcpy(copy, schema, VARSIZE(schema));
	evc_jv_root(copy, &root);
	base = base_uri ? pstrdup(base_uri) : pstrdup("");
	{
		char	   *id;

		if (get_string_member(&root, "$id", &id) && id[0] != '#')
			base = uri_strip_fragment(uri_resolve(base, id));
	}
	add_document(&cc, base, copy);
	cs->cxt = cxt;
	cs->root = compile_node(&cc, &root, base, NULL, "#");
	link_refs(&cc);
	check_ref_chains(&cc);
	cs->n_nodes = cc.n_nodes;
	MemoryContextSwitchTo(old);
	return cs;
}

/* "#/properties/a/items" for a node; built only when an error is reported. */
char *
evc_node_path(EvcNode *node)
{
	const char *segs[64];
	int			n = 0;
	StringInfoData s;

	if (node == NULL)
		return pstrdup("#");
	while (node != NULL && n < lengthof(segs))
	{
		segs[n++] = node->seg;
		node = node->parent;
	}
	initStringInfo(&s);
	if (node != NULL)
		appendStringInfoString(&s, "...");
	for (int i = n - 1; i >= 0; i--)
	{
		if (i == n - 1 && node == NULL)
			appendStringInfoString(&s, segs[i]);
		else
			appendStringInfo(&s, "/%s", segs[i]);
	}
	return s.data;
}
