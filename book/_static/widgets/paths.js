// The widget embedder loads its fonts relative to a module path it resolves next to the page; point that path at
// the copies served in _static/widgets, so a chapter's widgets render offline without a 404 per font.
require.config({
  paths: {"@jupyter-widgets/html-manager/dist": document.documentElement.dataset.content_root + "_static/widgets"},
});
