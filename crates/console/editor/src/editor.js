/*! The bundled packages (@codemirror/*, @lezer/*, crelt, style-mod, w3c-keyname,
  @marijn/find-cluster-break) are under the MIT License:

MIT License

Copyright (C) 2018-2021 by Marijn Haverbeke <marijn@haverbeke.berlin> and others

Permission is hereby granted, free of charge, to any person obtaining a copy
of this software and associated documentation files (the "Software"), to deal
in the Software without restriction, including without limitation the rights
to use, copy, modify, merge, publish, distribute, sublicense, and/or sell
copies of the Software, and to permit persons to whom the Software is
furnished to do so, subject to the following conditions:

The above copyright notice and this permission notice shall be included in
all copies or substantial portions of the Software.

THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR
IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY,
FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE
AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER
LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM,
OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN
THE SOFTWARE.
*/
// everynode console: the YAML editor. CodeMirror 6 takes over every
// <textarea data-editor="yaml">: highlighting, line numbers, search, undo, and the line of an
// error (data-error-line) marked. The text area stays in the form and follows the editor, so
// the form posts as it always did. Bundled by esbuild at build time; nothing is fetched at run
// time.
import { EditorState, StateField } from "@codemirror/state";
import {
  Decoration, EditorView, drawSelection, highlightActiveLine, highlightActiveLineGutter,
  keymap, lineNumbers, placeholder,
} from "@codemirror/view";
import { defaultKeymap, history, historyKeymap, indentWithTab } from "@codemirror/commands";
import {
  bracketMatching, defaultHighlightStyle, foldGutter, foldKeymap, indentOnInput, syntaxHighlighting,
} from "@codemirror/language";
import { highlightSelectionMatches, searchKeymap } from "@codemirror/search";
import { yaml } from "@codemirror/lang-yaml";
import { oneDark } from "@codemirror/theme-one-dark";

const errorLineMark = Decoration.line({ class: "cm-error-line", attributes: { "data-error-line": "" } });

// The marked error line, kept on its text while the user edits around it; gone once that line
// is edited (the error may be fixed).
function errorLineField(line) {
  return StateField.define({
    create(state) {
      if (!line || line > state.doc.lines) return Decoration.none;
      const at = state.doc.line(line).from;
      return Decoration.set([errorLineMark.range(at)]);
    },
    update(marks, tr) {
      if (!tr.docChanged) return marks;
      let touched = false;
      marks.between(0, tr.startState.doc.length, (from) => {
        const end = tr.startState.doc.lineAt(from).to;
        tr.changes.iterChangedRanges((a, b) => { if (a <= end && b >= from) touched = true; });
      });
      return touched ? Decoration.none : marks.map(tr.changes);
    },
    provide: (field) => EditorView.decorations.from(field),
  });
}

const dark = window.matchMedia && window.matchMedia("(prefers-color-scheme: dark)").matches;

function takeOver(area) {
  const line = Number(area.dataset.errorLine || "0");
  const view = new EditorView({
    parent: area.parentNode,
    state: EditorState.create({
      doc: area.value,
      extensions: [
        lineNumbers(), highlightActiveLineGutter(), foldGutter(), history(), drawSelection(),
        indentOnInput(), bracketMatching(), highlightActiveLine(), highlightSelectionMatches(),
        EditorState.tabSize.of(2),
        keymap.of([...defaultKeymap, ...historyKeymap, ...searchKeymap, ...foldKeymap, indentWithTab]),
        yaml(),
        dark ? oneDark : syntaxHighlighting(defaultHighlightStyle, { fallback: true }),
        errorLineField(line),
        placeholder(area.placeholder || ""),
        EditorView.updateListener.of((update) => {
          if (update.docChanged) area.value = update.state.doc.toString();
        }),
        EditorView.theme({
          "&": { border: "1px solid var(--input)", borderRadius: "4px", minHeight: "420px" },
          ".cm-scroller": { fontFamily: "ui-monospace, 'DejaVu Sans Mono', monospace", fontSize: "12.5px", minHeight: "420px", maxHeight: "70vh" },
          ".cm-error-line": { backgroundColor: "rgba(207, 34, 46, 0.18)" },
        }),
      ],
    }),
  });
  area.insertAdjacentElement("afterend", view.dom);
  area.hidden = true;
  area.dataset.editorReady = "1";
  // A file loaded into the text area replaces the editor's text.
  area.addEventListener("everynode:load", () => {
    view.dispatch({ changes: { from: 0, to: view.state.doc.length, insert: area.value } });
  });
  if (line && line <= view.state.doc.lines) {
    view.dispatch({ effects: EditorView.scrollIntoView(view.state.doc.line(line).from, { y: "center" }) });
  }
}

document.querySelectorAll("textarea[data-editor=yaml]").forEach(takeOver);
