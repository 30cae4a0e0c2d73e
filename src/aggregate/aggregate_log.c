/*
 * aggregate_log.c
 *		Owns the invalidation log of evc.events: the row trigger that notes
 *		what a transaction inserts, and the pre-commit step that writes one
 *		row per event type into evc.aggregate_invalidations.
 *
 * evc_aggregate publishes a window once it is closed.  An event that lands
 * later, with a sent_at inside a published window, must make it publish a
 * corrected aggregate.  To find such windows without rescanning history,
 * every transaction that inserts events records, per (client, event_name),
 * the lowest and highest sent_at it inserted: the trigger only updates a
 * small hash table in transaction memory, and the rows are written just
 * before commit, so they commit (or not) with the events they describe.
 * The cost per event is one hash probe.
 *
 * Event types whose names cannot be declared (longer than the registry
 * allows) are not noted.  Rows inserted and rolled back to a savepoint are
 * still noted, which only makes evc_aggregate recheck a window for nothing.
 */
#include "postgres.h"

#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "executor/executor.h"
#include "fmgr.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/timestamp.h"

#include "aggregate/aggregate.h"
#include "registry/registry.h"

#define NOTE_KEY_LEN (2 * EVC_NAME_MAX + 2)

typedef struct EventTypeNote
{
	char		key[NOTE_KEY_LEN];	/* client \x01 event_name */
	int			client_len;
	TimestampTz lo;
	TimestampTz hi;
} EventTypeNote;

static HTAB *notes = NULL;		/* in TopTransactionContext */
static bool callback_registered = false;

/* Column numbers in evc.events, looked up once per relation. */
static Oid	events_relid = InvalidOid;
static int	att_client,
			att_event,
			att_sent_at;

static void
flush_notes(void)
{
	Oid			nsp = get_namespace_oid("evc", true);
	Oid			relid = OidIsValid(nsp) ? get_relname_relid("aggregate_invalidations", nsp) : InvalidOid;
	Relation	rel;
	EState	   *estate;
	ResultRelInfo *rri;
	TupleTableSlot *slot;
	HASH_SEQ_STATUS seq;
	EventTypeNote *n;
	Datum		done = PointerGetDatum(construct_empty_array(INTERVALOID));
	TimestampTz now = GetCurrentTransactionStartTimestamp();

	/* The extension was dropped in this transaction: nothing to keep. */
	if (!OidIsValid(relid))
		return;
	rel = table_open(relid, RowExclusiveLock);
	if (RelationGetDescr(rel)->natts != 6)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("evc.aggregate_invalidations does not have the layout this library expects"),
				 errdetail("The table has %d columns; the evcollector library expects 6.",
						   RelationGetDescr(rel)->natts),
				 errhint("Run ALTER EXTENSION evcollector UPDATE.")));
	estate = CreateExecutorState();
	rri = makeNode(ResultRelInfo);
	InitResultRelInfo(rri, rel, 1, NULL, 0);
	ExecOpenIndices(rri, false);
	slot = ExecInitExtraTupleSlot(estate, RelationGetDescr(rel), &TTSOpsVirtual);

	hash_seq_init(&seq, notes);
	while ((n = hash_seq_search(&seq)) != NULL)
	{
		ExecClearTuple(slot);
		memset(slot->tts_isnull, 0, sizeof(bool) * 6);
		slot->tts_values[0] = PointerGetDatum(cstring_to_text_with_len(n->key, n->client_len));
		slot->tts_values[1] = CStringGetTextDatum(n->key + n->client_len + 1);
		slot->tts_values[2] = TimestampTzGetDatum(n->lo);
		slot->tts_values[3] = TimestampTzGetDatum(n->hi);
		slot->tts_values[4] = done;
		slot->tts_values[5] = TimestampTzGetDatum(now);
		ExecStoreVirtualTuple(slot);
		table_tuple_insert(rel, slot, GetCurrentCommandId(true), 0, NULL);
		if (rri->ri_NumIndices > 0)
			ExecInsertIndexTuples(rri, slot, estate, false, false, NULL, NIL);
	}
	ExecCloseIndices(rri);
	ExecDropSingleTupleTableSlot(slot);
	FreeExecutorState(estate);
	table_close(rel, NoLock);
}

static void
notes_xact_callback(XactEvent event, void *arg)
{
	switch (event)
	{
		case XACT_EVENT_PRE_COMMIT:
		case XACT_EVENT_PRE_PREPARE:
			/* An error here aborts the transaction, and the abort clears notes. */
			if (notes != NULL)
			{
				flush_notes();
				notes = NULL;
			}
			break;
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PREPARE:
		case XACT_EVENT_PARALLEL_COMMIT:
		case XACT_EVENT_PARALLEL_ABORT:
			/* The table lived in TopTransactionContext, which is gone. */
			notes = NULL;
			break;
		default:
			break;
	}
}

static void
lookup_columns(Relation rel)
{
	TupleDesc	desc = RelationGetDescr(rel);

	att_client = att_event = att_sent_at = 0;
	for (int i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute a = TupleDescAttr(desc, i);

		if (a->attisdropped)
			continue;
		if (strcmp(NameStr(a->attname), "client") == 0 && a->atttypid == TEXTOID)
			att_client = i + 1;
		else if (strcmp(NameStr(a->attname), "event_name") == 0 && a->atttypid == TEXTOID)
			att_event = i + 1;
		else if (strcmp(NameStr(a->attname), "sent_at") == 0 && a->atttypid == TIMESTAMPTZOID)
			att_sent_at = i + 1;
	}
	if (att_client == 0 || att_event == 0 || att_sent_at == 0)
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("evc.note_event_insert() needs columns client, event_name and sent_at"),
				 errdetail("Table \"%s\" lacks one of them.", RelationGetRelationName(rel))));
	events_relid = RelationGetRelid(rel);
}

/* Copy a text datum into buf (at most max bytes); false if it is longer. */
static bool
text_into(Datum d, char *buf, int max, int *len)
{
	text	   *t = DatumGetTextPP(d);
	int			l = VARSIZE_ANY_EXHDR(t);

	if (l > max || l == 0)
		return false;
	memcpy(buf, VARDATA_ANY(t), l);
	*len = l;
	return true;
}

/* AFTER INSERT FOR EACH ROW on evc.events. */
PG_FUNCTION_INFO_V1(evc_note_event_insert);
Datum
evc_note_event_insert(PG_FUNCTION_ARGS)
{
	TriggerData *td = (TriggerData *) fcinfo->context;
	HeapTuple	tup;
	TupleDesc	desc;
	Datum		d;
	bool		isnull;
	TimestampTz sent_at;
	char		key[NOTE_KEY_LEN];
	int			clen,
				elen;
	EventTypeNote *n;
	bool		found;

	if (!CALLED_AS_TRIGGER(fcinfo) || !TRIGGER_FIRED_AFTER(td->tg_event) ||
		!TRIGGER_FIRED_FOR_ROW(td->tg_event) || !TRIGGER_FIRED_BY_INSERT(td->tg_event))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("evc.note_event_insert() must be an AFTER INSERT FOR EACH ROW trigger")));
	if (RelationGetRelid(td->tg_relation) != events_relid)
		lookup_columns(td->tg_relation);
	tup = td->tg_trigtuple;
	desc = RelationGetDescr(td->tg_relation);

	d = heap_getattr(tup, att_sent_at, desc, &isnull);
	if (isnull)
		return PointerGetDatum(NULL);	/* no event time: never aggregated */
	sent_at = DatumGetTimestampTz(d);
	d = heap_getattr(tup, att_client, desc, &isnull);
	if (isnull || !text_into(d, key, EVC_NAME_MAX, &clen))
		return PointerGetDatum(NULL);
	key[clen] = '\x01';
	d = heap_getattr(tup, att_event, desc, &isnull);
	if (isnull || !text_into(d, key + clen + 1, EVC_NAME_MAX, &elen))
		return PointerGetDatum(NULL);
	key[clen + 1 + elen] = '\0';

	if (notes == NULL)
	{
		HASHCTL		ctl;

		if (!callback_registered)
		{
			RegisterXactCallback(notes_xact_callback, NULL);
			callback_registered = true;
		}
		ctl.keysize = NOTE_KEY_LEN;
		ctl.entrysize = sizeof(EventTypeNote);
		ctl.hcxt = TopTransactionContext;
		notes = hash_create("evcollector event type notes", 16, &ctl,
							HASH_ELEM | HASH_STRINGS | HASH_CONTEXT);
	}
	n = hash_search(notes, key, HASH_ENTER, &found);
	if (!found)
	{
		n->client_len = clen;
		n->lo = n->hi = sent_at;
	}
	else if (sent_at < n->lo)
		n->lo = sent_at;
	else if (sent_at > n->hi)
		n->hi = sent_at;
	return PointerGetDatum(NULL);
}
