// Renders every <div data-figure="ID"> from the JSON payload in <script id="ID">.
document.querySelectorAll("[data-figure]").forEach(function (div) {
  var payload = document.getElementById(div.dataset.figure);
  if (!payload || !window.Plotly) { return; }
  var figure = JSON.parse(payload.textContent);
  window.Plotly.newPlot(div, figure.data, figure.layout, { responsive: true, displaylogo: false });
});
