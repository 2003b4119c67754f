// Draws each order diagram from its Mermaid source with the vendored Mermaid bundle.
// The page then carries data-rendered="true" (or "error") on the figure, which the
// browser tests wait for.
(function () {
  "use strict";

  // Mermaid 12 leaves its own placeholders for entity codes ("#58;" is ":") in state
  // descriptions instead of decoding them; write them back as character references.
  var NAMED = { lt: "&lt;", gt: "&gt;", quot: "&quot;", amp: "&amp;" };
  function decodeEntities(svg) {
    return svg
      .replace(/\ufb02\u00b0\u00b0(\d+)\u00b6\u00df/g, "&#$1;")
      .replace(/\ufb02\u00b0(\w+)\u00b6\u00df/g, function (whole, name) {
        return NAMED[name] || whole;
      });
  }

  function draw(figure, index) {
    var canvas = figure.querySelector(".diagram-canvas");
    var source = figure.querySelector(".diagram-source").textContent;
    return window.mermaid
      .render("order-diagram-" + index, source)
      .then(function (result) {
        canvas.innerHTML = decodeEntities(result.svg);
        figure.dataset.rendered = "true";
        addZoom(figure);
      })
      .catch(function (error) {
        canvas.textContent = "The diagram could not be drawn: " + error;
        figure.dataset.rendered = "error";
      });
  }

  // Fit to the page's width (the default), or the drawing's own size with a scroll bar.
  function addZoom(figure) {
    var button = document.querySelector('button.zoom[aria-controls="' + figure.id + '"]');
    var svg = figure.querySelector(".diagram-canvas svg");
    if (!button || !svg || !svg.viewBox.baseVal) {
      return;
    }
    var fitted = svg.style.maxWidth;
    button.hidden = false;
    button.addEventListener("click", function () {
      var natural = figure.classList.toggle("natural");
      svg.style.maxWidth = natural ? "none" : fitted;
      svg.style.width = natural ? svg.viewBox.baseVal.width + "px" : "";
      button.textContent = natural ? "Fit to width" : "Actual size";
      button.setAttribute("aria-pressed", natural ? "true" : "false");
    });
  }

  var figures = document.querySelectorAll("figure.diagram");
  if (!figures.length) {
    return;
  }
  if (!window.mermaid) {
    figures.forEach(function (figure) {
      figure.querySelector(".diagram-canvas").textContent =
        "Mermaid did not load; the source below describes the diagram.";
      figure.dataset.rendered = "error";
    });
    return;
  }
  window.mermaid.initialize({
    startOnLoad: false,
    securityLevel: "strict",
    theme: "neutral",
    themeVariables: {
      noteBkgColor: "#fffbeb",
      noteBorderColor: "#d6b656",
      noteTextColor: "#4b5563",
    },
    fontFamily: "system-ui, sans-serif",
    state: { useMaxWidth: true },
  });
  figures.forEach(draw);
})();
