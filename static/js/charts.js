// Renders every <div data-figure="ID"> from the JSON payload in <script id="ID">.
// data-static="1" draws a non-interactive figure (sparklines).
document.querySelectorAll("[data-figure]").forEach(function (div) {
  var payload = document.getElementById(div.dataset.figure);
  if (!payload || !window.Plotly) { return; }
  var figure = JSON.parse(payload.textContent);
  var config = div.dataset.static ? { staticPlot: true } : { responsive: true, displaylogo: false };
  window.Plotly.newPlot(div, figure.data, figure.layout, config);
});
