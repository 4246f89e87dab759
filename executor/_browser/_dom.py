"""What runs inside the page: element ids (bids), the focused element, the page as Markdown, scrolling.

Bids are the ``bid`` attribute of every element of a frame's document (open shadow roots
included), ``<frame prefix><n>``: the main frame's are plain numbers, a child frame's start with
its letters (``a12``). A document keeps a WeakMap from element to bid, so an element keeps its bid
across actions and only new elements get new ones, even if the page rewrites the attribute.

The Markdown comes from the live DOM (after the page's scripts ran, hidden elements left out) in
the same call that marks the bids: one round trip for a ``browse_url``. A compact converter of our
own rather than a Python HTML-to-Markdown package: no dependency in the image, no second parse of
serialized HTML, and the browser already knows what is visible.
"""

from __future__ import annotations

import re

BID_ATTRIBUTE = "bid"
BID = re.compile(r"([a-z]*)([0-9]+)")

_MARK = r"""
(root, prefix) => {
  const state = window.__corralBids || (window.__corralBids = {next: 1, ids: new WeakMap()});
  const visit = (node) => {
    for (const el of node.querySelectorAll('*')) {
      let bid = state.ids.get(el);
      if (bid === undefined) { bid = prefix + (state.next++); state.ids.set(el, bid); }
      if (el.getAttribute('bid') !== bid) el.setAttribute('bid', bid);
      if (el.shadowRoot) visit(el.shadowRoot);
    }
  };
  visit(root);
}
"""

_FOCUSED = r"""
() => {
  let el = document.activeElement;
  while (el && el.shadowRoot && el.shadowRoot.activeElement) el = el.shadowRoot.activeElement;
  if (!el || el === document.body || el === document.documentElement || el.tagName === 'IFRAME'
      || el.tagName === 'FRAME' || (window !== window.top && !document.hasFocus())) return null;
  return el.getAttribute('bid');
}
"""

_MARKDOWN = r"""
(root) => {
  const SKIP = new Set(['SCRIPT', 'STYLE', 'NOSCRIPT', 'TEMPLATE', 'HEAD', 'SVG', 'CANVAS', 'IFRAME', 'FRAME',
                        'OBJECT', 'TEXTAREA', 'INPUT', 'SELECT', 'OPTION', 'DATALIST']);
  const BLOCK = new Set(['P', 'DIV', 'SECTION', 'ARTICLE', 'MAIN', 'HEADER', 'FOOTER', 'NAV', 'ASIDE', 'FORM',
                         'FIELDSET', 'FIGURE', 'FIGCAPTION', 'ADDRESS', 'DETAILS', 'SUMMARY', 'DL', 'DT', 'DD',
                         'CENTER', 'BODY', 'HTML', 'LEGEND', 'CAPTION']);
  const IND = '\u0001';  // list indentation, kept through the line trimming below
  const flat = (s) => s.replace(/\s*\n\s*/g, ' ').trim();
  const kids = (el, depth) => Array.from((el.shadowRoot || el).childNodes, (c) => md(c, depth)).join('');
  const wrap = (mark, s) => (s.trim() ? mark + s.trim() + mark : s);
  const list = (el, depth) => {
    let n = 0;
    const items = Array.from(el.children).filter((li) => li.tagName === 'LI').map((li) => {
      const bullet = el.tagName === 'OL' ? `${++n}. ` : '- ';
      const body = kids(li, depth + 1).replace(/^\n+|\n+$/g, '').replace(/\n{2,}/g, '\n');
      return IND.repeat(depth * 2) + bullet + body.trim();
    });
    return `\n${depth ? '' : '\n'}${items.join('\n')}\n${depth ? '' : '\n'}`;
  };
  const table = (el) => {
    const rows = Array.from(el.querySelectorAll('tr')).map((tr) => '| ' + Array.from(tr.children,
      (td) => flat(kids(td, 0)).replace(/\|/g, '\\|')).join(' | ') + ' |');
    if (!rows.length) return '';
    const width = el.querySelector('tr').children.length;
    rows.splice(1, 0, '|' + ' --- |'.repeat(width));
    return `\n\n${rows.join('\n')}\n\n`;
  };
  const md = (node, depth) => {
    if (node.nodeType === 3) return node.data.replace(/\s+/g, ' ');
    if (node.nodeType !== 1) return '';
    const el = node, tag = el.tagName.toUpperCase();
    if (SKIP.has(tag) || (el.checkVisibility && !el.checkVisibility())) {
      if (tag === 'INPUT' && ['submit', 'button'].includes(el.type) && el.value) return ` [${el.value}] `;
      return '';
    }
    if (/^H[1-6]$/.test(tag)) return `\n\n${'#'.repeat(+tag[1])} ${flat(kids(el, depth))}\n\n`;
    switch (tag) {
      case 'BR': return '\n';
      case 'HR': return '\n\n---\n\n';
      case 'STRONG': case 'B': return wrap('**', kids(el, depth));
      case 'EM': case 'I': return wrap('_', kids(el, depth));
      case 'DEL': case 'S': return wrap('~~', kids(el, depth));
      case 'CODE': return wrap('`', el.textContent);
      case 'PRE': return '\n\n```\n' + el.innerText.replace(/\n+$/, '') + '\n```\n\n';
      case 'UL': case 'OL': return list(el, depth);
      case 'TABLE': return table(el);
      case 'BUTTON': return ` [${flat(kids(el, depth))}] `;
      case 'BLOCKQUOTE': return '\n\n' + kids(el, depth).trim().split('\n').map((l) => '> ' + l).join('\n') + '\n\n';
      case 'IMG': return el.alt ? `![${flat(el.alt)}](${el.src})` : '';
      case 'A': {
        const text = flat(kids(el, depth));
        const href = el.getAttribute('href');
        return !href || href.startsWith('javascript:') || !text ? text : `[${text}](${el.href})`;
      }
    }
    const inner = kids(el, depth);
    return BLOCK.has(tag) ? `\n\n${inner}\n\n` : inner;
  };
  let fenced = false;
  const lines = md(root, 0).split('\n').map((line) => {
    if (line.startsWith('```')) fenced = !fenced;
    return fenced || line.startsWith('```') ? line : line.replace(/^[ \t]+|[ \t]+$/g, '').replace(/ {2,}/g, ' ');
  });
  return lines.join('\n').replace(/\n{3,}/g, '\n\n').replace(/\u0001/g, ' ').trim();
}
"""

SNAPSHOT_JS = f"""
([prefix, markdown]) => {{
  ({_MARK})(document, prefix);
  return {{focused: ({_FOCUSED})(), title: document.title,
          markdown: markdown ? ({_MARKDOWN})(document.body || document.documentElement) : null}};
}}
"""
"""One frame's pass: mark its bids, name its focused element, its title, and (asked, for the main
frame) its Markdown."""

SCROLL_JS = r"""
async ([dx, dy]) => {
  let el = document.elementFromPoint(innerWidth / 2, innerHeight / 2);
  const scrollable = (e) => {
    const style = getComputedStyle(e);
    return /(auto|scroll)/.test(style.overflowY + style.overflowX)
      && (e.scrollHeight > e.clientHeight || e.scrollWidth > e.clientWidth);
  };
  while (el && el !== document.body && el !== document.documentElement && !scrollable(el)) el = el.parentElement;
  const target = el && el !== document.body && el !== document.documentElement ? el : document.scrollingElement;
  target.scrollBy({left: dx, top: dy, behavior: 'instant'});
  // scroll listeners run in the next rendering step, before animation frame callbacks
  await new Promise((resolve) => requestAnimationFrame(() => setTimeout(resolve, 0)));
}
"""
"""BrowserGym's ``scroll(dx, dy)``: scroll what is under the viewport's centre (else the page) at
once, and return after the page's scroll listeners have run, so the answer shows their effect."""

IS_FILE_INPUT_JS = "(el) => el instanceof HTMLInputElement && el.type === 'file'"
DOWNLOAD_LINK_JS = "(el) => !!(el.closest && el.closest('a[download][href]'))"


def frame_prefix(index: int) -> str:
    """The bid prefix of the ``index``-th child frame seen on a page: a, b, ..., z, aa, ab, ..."""
    letters = ""
    index += 1
    while index:
        index, rest = divmod(index - 1, 26)
        letters = chr(ord("a") + rest) + letters
    return letters


def bid_selector(bid: str) -> str:
    return f'[{BID_ATTRIBUTE}="{bid}"]'
