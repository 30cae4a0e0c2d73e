#!/usr/bin/env bash
# test/checks/links.sh: every relative Markdown link in the documentation
# resolves.
#
#   test/checks/links.sh [FILE.md ...]
#
# Run from the repository root.  Without arguments it checks README.md,
# docs/*.md, CHANGELOG.md and src/*/README.md (those that exist).  For each
# relative link [text](target) or [label]: target, outside code, the target
# file or directory must exist, and a #anchor must match a heading of the
# target Markdown file, slugged as GitHub does (lower case, spaces to "-",
# punctuation other than "-" and "_" dropped, "-1", "-2" ... for repeats).
# http(s) and mailto links are not fetched.
#
# Prints TAP: "1..N", then per file "ok N - FILE" or
# "not ok N - FILE: LINK -> WHAT IS MISSING" (further problems of the same
# file follow as "# " lines).  Exits non-zero if any file fails.
set -u

if [ $# -eq 0 ]; then
	set --
	for f in README.md docs/*.md CHANGELOG.md src/*/README.md; do
		[ -f "$f" ] && set -- "$@" "$f"
	done
fi

exec python3 - "$@" <<'PY'
import os
import re
import sys
import unicodedata

FENCE = re.compile(r'^ {0,3}(`{3,}|~{3,})')
INLINE_CODE = re.compile(r'(`+)(.+?)\1')
# [text](target) or ![alt](target); the target may be <...> and may carry a title.
INLINE_LINK = re.compile(r'!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*(<[^>]*>|[^\s()]*(?:\([^\s()]*\)[^\s()]*)*)(?:\s+"[^"]*"|\s+\'[^\']*\')?\s*\)')
REF_DEF = re.compile(r'^ {0,3}\[[^\]]+\]:\s*(<[^>]*>|\S+)')
HEADING = re.compile(r'^ {0,3}(#{1,6})\s+(.*?)\s*#*\s*$')
HTML_ANCHOR = re.compile(r'<a\s+(?:name|id)="([^"]+)"', re.I)
LINE_ANCHOR = re.compile(r'^L\d+(-L\d+)?$')


def prose_lines(path):
	"""(line number, text) of the lines outside fenced code blocks."""
	fence = None
	with open(path, encoding='utf-8') as fh:
		for n, line in enumerate(fh, 1):
			m = FENCE.match(line)
			if fence:
				if m and m.group(1)[0] == fence[0] and len(m.group(1)) >= len(fence):
					fence = None
				continue
			if m:
				fence = m.group(1)
				continue
			if line.startswith('    ') or line.startswith('\t'):
				continue			# indented code block
			yield n, line.rstrip('\n')


def slug(text):
	"""GitHub's anchor for a heading's text."""
	text = INLINE_CODE.sub(lambda m: m.group(2), text)
	text = re.sub(r'!?\[([^\]]*)\]\([^)]*\)', r'\1', text)	# links keep their text
	text = re.sub(r'<[^>]+>', '', text)						# inline HTML
	out = []
	for ch in text.strip().lower():
		cat = unicodedata.category(ch)
		if ch == ' ' or ch == '-':
			out.append('-')
		elif cat[0] in 'LMN' or cat == 'Pc':
			out.append(ch)
	return ''.join(out)


_anchors = {}


def anchors(path):
	if path not in _anchors:
		seen = {}
		found = set()
		for _, line in prose_lines(path):
			for a in HTML_ANCHOR.findall(line):
				found.add(a)
			m = HEADING.match(line)
			if not m:
				continue
			s = slug(m.group(2))
			if s in seen:
				seen[s] += 1
				found.add('%s-%d' % (s, seen[s]))
			else:
				seen[s] = 0
				found.add(s)
		_anchors[path] = found
	return _anchors[path]


def links(path):
	for n, line in prose_lines(path):
		m = REF_DEF.match(line)
		if m:
			yield n, m.group(1)
			continue
		bare = INLINE_CODE.sub('', line)
		for m in INLINE_LINK.finditer(bare):
			yield n, m.group(1)


def problem(path, target):
	"""What is missing for one link, or None."""
	if target.startswith('<') and target.endswith('>'):
		target = target[1:-1]
	if not target or re.match(r'^[a-z][a-z0-9+.-]*:', target, re.I):
		return None					# http:, https:, mailto: ... are not fetched
	file_part, _, anchor = target.partition('#')
	if file_part.startswith('/'):
		dest = os.path.normpath(file_part.lstrip('/'))
	elif file_part:
		dest = os.path.normpath(os.path.join(os.path.dirname(path), file_part))
	else:
		dest = path
	if not os.path.exists(dest):
		return 'no file %s' % dest
	if not anchor:
		return None
	if os.path.isdir(dest):
		return 'anchor #%s on a directory' % anchor
	if not dest.endswith('.md'):
		if LINE_ANCHOR.match(anchor):
			return None
		return 'anchor #%s in %s, which is not Markdown' % (anchor, dest)
	if anchor not in anchors(dest):
		return 'no heading #%s in %s' % (anchor, dest)
	return None


files = sys.argv[1:]
print('1..%d' % len(files))
failed = 0
for i, path in enumerate(files, 1):
	if not os.path.isfile(path):
		print('not ok %d - %s: no such file' % (i, path))
		failed += 1
		continue
	bad = []
	for n, target in links(path):
		p = problem(path, target)
		if p:
			bad.append('%s (line %d) -> %s' % (target, n, p))
	if bad:
		failed += 1
		print('not ok %d - %s: %s' % (i, path, bad[0]))
		for b in bad[1:]:
			print('# %s: %s' % (path, b))
	else:
		print('ok %d - %s' % (i, path))
sys.exit(1 if failed else 0)
PY
