/* accelbench report: draws the charts from the JSON in the page, sorts and filters tables, downloads the CSV.
   No network: everything it needs is in the file. */
(function () {
  "use strict";

  function drawChart(div, config) {
    var figure = JSON.parse(document.getElementById(div.dataset.figure).textContent);
    // the container keeps the figure's height: plotly's responsive mode only follows the width, and on a
    // window resize it would otherwise shrink the box to its CSS minimum and let charts overlap
    if (figure.layout && figure.layout.height) { div.style.height = figure.layout.height + "px"; }
    return Plotly.newPlot(div, figure.data, figure.layout, config);
  }

  function renderCharts() {
    // One chart at a time, those on the first screen first, yielding to the browser in between: the reader
    // sees the top of the page drawn while the rest is still being laid out.
    var config = {displaylogo: false, responsive: true, toImageButtonOptions: {format: "svg"}};
    var charts = Array.prototype.slice.call(document.querySelectorAll(".chart[data-figure]"));
    var firstScreen = charts.filter(function (div) { return div.getBoundingClientRect().top < window.innerHeight; });
    var rest = charts.filter(function (div) { return firstScreen.indexOf(div) < 0; });
    var chain = Promise.resolve();
    if (!firstScreen.length) { window.accelbenchFirstScreenAt = performance.now(); }
    firstScreen.concat(rest).forEach(function (div) {
      chain = chain.then(function () { return drawChart(div, config); }).then(function () {
        if (div === firstScreen[firstScreen.length - 1]) { window.accelbenchFirstScreenAt = performance.now(); }
        return new Promise(function (resolve) { setTimeout(resolve, 0); });
      });
    });
    return chain;
  }

  function cellKey(row, column) {
    var cell = row.cells[column];
    if (!cell) { return {number: null, text: ""}; }
    var sort = cell.getAttribute("data-sort");
    return {number: sort === null ? null : parseFloat(sort), text: cell.textContent.trim().toLowerCase()};
  }

  function sortTable(table, column, header) {
    var ascending = header.getAttribute("aria-sort") !== "ascending";
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th) { th.removeAttribute("aria-sort"); });
    header.setAttribute("aria-sort", ascending ? "ascending" : "descending");
    var body = table.tBodies[0];
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (a, b) {
      var x = cellKey(a, column), y = cellKey(b, column);
      if (x.number !== null || y.number !== null) {  // numbers first, missing values last either way
        if (x.number === null) { return 1; }
        if (y.number === null) { return -1; }
        return ascending ? x.number - y.number : y.number - x.number;
      }
      return ascending ? x.text.localeCompare(y.text) : y.text.localeCompare(x.text);
    });
    rows.forEach(function (row) { body.appendChild(row); });
  }

  function filterTable(input) {
    var table = document.getElementById(input.dataset.table);
    var terms = input.value.toLowerCase().split(/\s+/).filter(Boolean);
    Array.prototype.forEach.call(table.tBodies[0].rows, function (row) {
      var text = row.textContent.toLowerCase();
      row.hidden = !terms.every(function (term) { return text.indexOf(term) >= 0; });
    });
  }

  function downloadCsv() {
    var csv = JSON.parse(document.getElementById("records-csv").textContent);
    var link = document.createElement("a");
    link.href = URL.createObjectURL(new Blob([csv], {type: "text/csv"}));
    link.download = "accelbench-records.csv";
    document.body.appendChild(link);
    link.click();
    link.remove();
  }

  Array.prototype.forEach.call(document.querySelectorAll("table.sortable"), function (table) {
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th, column) {
      th.tabIndex = 0;
      th.title = "sort";
      th.addEventListener("click", function () { sortTable(table, column, th); });
      th.addEventListener("keydown", function (e) { if (e.key === "Enter") { sortTable(table, column, th); } });
    });
  });
  Array.prototype.forEach.call(document.querySelectorAll("input.filter"), function (input) {
    input.addEventListener("input", function () { filterTable(input); });
  });
  var button = document.getElementById("download-csv");
  if (button) { button.addEventListener("click", downloadCsv); }

  window.accelbenchRendered = renderCharts().then(function () {
    window.accelbenchRenderedAt = performance.now();
    document.body.setAttribute("data-rendered", "true");
  });
})();
