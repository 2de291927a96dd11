// The widget embedder loads its fonts relative to a module path it resolves next to the page; point that path at
// the copies served in _static/widgets, so a chapter's widgets render offline without a 404 per font.
require.config({
  paths: {"@jupyter-widgets/html-manager/dist": document.documentElement.dataset.content_root + "_static/widgets"},
});

// The embedder (html-manager 1.x) typesets widget labels with MathJax 2's `MathJax.Hub.Queue`; the book serves
// MathJax 3, which has no Hub. Translate its "Typeset" calls once MathJax 3 is on the page (the embedder renders
// on "load", after this listener, registered first, has run).
window.addEventListener("load", () => {
  const mathjax = window.MathJax;
  if (!mathjax || mathjax.Hub) {
    return;
  }
  mathjax.Hub = {
    Queue: (...calls) => {
      for (const call of calls) {
        if (Array.isArray(call) && call[0] === "Typeset" && call[2] && mathjax.typesetPromise) {
          mathjax.typesetPromise([call[2]]);
        }
      }
    },
  };
});
