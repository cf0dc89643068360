/* report: one HTML page with inline SVG plots, written with fprintf.
 *
 * Every plot goes through one small chart writer (chart_*): a frame with
 * axes, ticks and labels, then series as polylines with markers, optional
 * 95% interval bars, and a legend. Points carry <title> elements, so a
 * browser shows their values on hover without any script. The one inline
 * script checks what was drawn (every plot has at least one series with
 * points) and records it, and any script error, on <body> as data
 * attributes: tests/test_report.sh reads them back from headless Chromium.
 */
#include "report.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "util.h"

#define W 560
#define H 320
#define ML 64
#define MR 16
#define MT 34
#define MB 46

static const char *colour[] = {"#1f6feb", "#d1242f", "#6e7781", "#2da44e", "#8250df"};

static void html_text(FILE *f, const char *s)
{
    for (; *s; s++) {
        switch (*s) {
        case '<': fputs("&lt;", f); break;
        case '>': fputs("&gt;", f); break;
        case '&': fputs("&amp;", f); break;
        case '"': fputs("&quot;", f); break;
        default: fputc(*s, f);
        }
    }
}

typedef struct {
    const char *name;
    const double *x, *y, *err; /* err: half-widths, may be NULL */
    uint32_t n;
    int dashed, markers;
} series;

typedef struct {
    const char *id, *title, *xlabel, *ylabel;
    double x0, x1, y0, y1;
    int xlog;                       /* x on a log scale (K) */
    const double *xticks;           /* NULL: 5 even ticks */
    uint32_t nxticks;
    int diagonal;                   /* draw y = x */
} chart;

static double px(const chart *c, double x)
{
    double t = c->xlog ? (log(x) - log(c->x0)) / (log(c->x1) - log(c->x0)) : (x - c->x0) / (c->x1 - c->x0);
    return ML + t * (W - ML - MR);
}

static double py(const chart *c, double y) { return H - MB - (y - c->y0) / (c->y1 - c->y0) * (H - MT - MB); }

static void tick_label(char *out, size_t n, double v)
{
    if (v != 0 && (fabs(v) < 1e-3 || fabs(v) >= 1e5)) snprintf(out, n, "%.1e", v);
    else snprintf(out, n, "%.4g", v);
}

static void chart_write(FILE *f, const chart *c, const series *s, uint32_t ns)
{
    fprintf(f, "<figure><svg class=\"plot\" id=\"%s\" viewBox=\"0 0 %d %d\" width=\"%d\" height=\"%d\" "
               "role=\"img\" aria-label=\"",
            c->id, W, H, W, H);
    html_text(f, c->title);
    fprintf(f, "\">\n<text x=\"%d\" y=\"20\" class=\"title\">", W / 2);
    html_text(f, c->title);
    fprintf(f, "</text>\n");
    /* frame and grid */
    fprintf(f, "<rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" class=\"frame\"/>\n", ML, MT, W - ML - MR,
            H - MT - MB);
    for (int i = 0; i <= 4; i++) {
        double v = c->y0 + (c->y1 - c->y0) * i / 4.0, y = py(c, v);
        char lab[32];
        tick_label(lab, sizeof lab, v);
        fprintf(f, "<line x1=\"%d\" x2=\"%d\" y1=\"%.1f\" y2=\"%.1f\" class=\"grid\"/>"
                   "<text x=\"%d\" y=\"%.1f\" class=\"ytick\">%s</text>\n",
                ML, W - MR, y, y, ML - 6, y + 4, lab);
    }
    for (uint32_t i = 0; i < (c->xticks ? c->nxticks : 5); i++) {
        double v = c->xticks ? c->xticks[i] : c->x0 + (c->x1 - c->x0) * i / 4.0, x = px(c, v);
        char lab[32];
        tick_label(lab, sizeof lab, v);
        fprintf(f, "<line x1=\"%.1f\" x2=\"%.1f\" y1=\"%d\" y2=\"%d\" class=\"tick\"/>"
                   "<text x=\"%.1f\" y=\"%d\" class=\"xtick\">%s</text>\n",
                x, x, H - MB, H - MB + 5, x, H - MB + 18, lab);
    }
    fprintf(f, "<text x=\"%d\" y=\"%d\" class=\"xlabel\">", (ML + W - MR) / 2, H - 8);
    html_text(f, c->xlabel);
    fprintf(f, "</text><text x=\"14\" y=\"%d\" class=\"ylabel\" transform=\"rotate(-90 14 %d)\">", (MT + H - MB) / 2,
            (MT + H - MB) / 2);
    html_text(f, c->ylabel);
    fprintf(f, "</text>\n");
    if (c->diagonal) {
        double lo = c->x0 > c->y0 ? c->x0 : c->y0, hi = c->x1 < c->y1 ? c->x1 : c->y1;
        fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" class=\"diag\"/>\n", px(c, lo), py(c, lo),
                px(c, hi), py(c, hi));
    }
    for (uint32_t i = 0; i < ns; i++) {
        const series *q = &s[i];
        const char *col = colour[i % 5];
        fprintf(f, "<g class=\"series\" data-name=\"");
        html_text(f, q->name);
        fprintf(f, "\" data-points=\"%u\">\n<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"2\"%s points=\"", q->n,
                col, q->dashed ? " stroke-dasharray=\"5 4\"" : "");
        for (uint32_t j = 0; j < q->n; j++)
            if (isfinite(q->y[j])) fprintf(f, "%.1f,%.1f ", px(c, q->x[j]), py(c, q->y[j]));
        fprintf(f, "\"/>\n");
        for (uint32_t j = 0; j < q->n; j++) {
            if (!isfinite(q->y[j])) continue;
            double x = px(c, q->x[j]), y = py(c, q->y[j]);
            if (q->err && q->err[j] > 0)
                fprintf(f, "<line x1=\"%.1f\" x2=\"%.1f\" y1=\"%.1f\" y2=\"%.1f\" stroke=\"%s\" class=\"ci\"/>\n", x, x,
                        py(c, q->y[j] - q->err[j]), py(c, q->y[j] + q->err[j]), col);
            if (q->markers) {
                fprintf(f, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3.5\" fill=\"%s\"><title>", x, y, col);
                html_text(f, q->name);
                fprintf(f, ": %.6g at %.6g", q->y[j], q->x[j]);
                if (q->err && q->err[j] > 0) fprintf(f, " (± %.4g)", q->err[j]);
                fprintf(f, "</title></circle>\n");
            }
        }
        fprintf(f, "</g>\n");
        /* legend */
        fprintf(f, "<rect x=\"%d\" y=\"%d\" width=\"12\" height=\"3\" fill=\"%s\"/><text x=\"%d\" y=\"%d\" "
                   "class=\"legend\">",
                W - MR - 150, MT + 10 + 16 * (int)i, col, W - MR - 134, MT + 15 + 16 * (int)i);
        html_text(f, q->name);
        fprintf(f, "</text>\n");
    }
    fprintf(f, "</svg></figure>\n");
}

/* y range from 0 (or the data's minimum) to a little above the maximum. */
static void y_range(const series *s, uint32_t ns, int from_zero, double *y0, double *y1)
{
    double lo = INFINITY, hi = -INFINITY;
    for (uint32_t i = 0; i < ns; i++)
        for (uint32_t j = 0; j < s[i].n; j++) {
            double e = s[i].err ? s[i].err[j] : 0, v = s[i].y[j];
            if (!isfinite(v)) continue;
            if (v - e < lo) lo = v - e;
            if (v + e > hi) hi = v + e;
        }
    if (!isfinite(lo)) lo = 0, hi = 1;
    if (from_zero && lo > 0) lo = 0;
    if (!(hi > lo)) hi = lo + 1;
    double pad = (hi - lo) * 0.08;
    *y0 = from_zero ? lo : lo - pad;
    *y1 = hi + pad;
}

static void metric_chart(FILE *f, const st_report *r, int metric, const char *id, const char *title)
{
    const st_eval_summary *m = r->sum[0];
    uint32_t nk = m->nk, ns = 0;
    double x[ST_EVAL_MAXK], y[ST_REPORT_RANKERS][ST_EVAL_MAXK], e[ST_REPORT_RANKERS][ST_EVAL_MAXK];
    series s[ST_REPORT_RANKERS];
    for (uint32_t j = 0; j < nk; j++) x[j] = m->ks[j];
    for (int i = 0; i < ST_REPORT_RANKERS; i++) {
        if (!r->sum[i]) continue;
        for (uint32_t j = 0; j < nk; j++) {
            y[ns][j] = r->sum[i]->m[j][metric].mean;
            e[ns][j] = r->sum[i]->m[j][metric].half;
        }
        s[ns] = (series){r->names[i], x, y[ns], e[ns], nk, i != 0, 1};
        ns++;
    }
    chart c = {id, title, "K (log scale)", title, x[0], x[nk - 1], 0, 1, nk > 1, x, nk, 0};
    if (nk == 1) {
        c.x0 = x[0] - 1;
        c.x1 = x[0] + 1;
    }
    y_range(s, ns, 1, &c.y0, &c.y1);
    chart_write(f, &c, s, ns);
}

static const char *css =
    "body{font:14px/1.45 system-ui,-apple-system,'Segoe UI',sans-serif;margin:24px auto;max-width:1180px;"
    "color:#1f2328;padding:0 16px}"
    "h1{font-size:22px;margin:0 0 12px}h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #d0d7de}"
    "table{border-collapse:collapse;margin:6px 0}td,th{padding:3px 10px;border-bottom:1px solid #eaeef2;"
    "text-align:right;font-variant-numeric:tabular-nums}th{background:#f6f8fa}td.l,th.l{text-align:left}"
    ".facts td{text-align:left}.facts td:first-child{color:#57606a;white-space:nowrap}"
    ".plots{display:flex;flex-wrap:wrap;gap:12px}figure{margin:0}svg.plot{background:#fff;border:1px solid #d0d7de}"
    ".frame{fill:none;stroke:#8c959f}.grid{stroke:#eaeef2}.tick{stroke:#8c959f}.diag{stroke:#8c959f;"
    "stroke-dasharray:3 3}.ci{stroke-width:1.5;opacity:.6}"
    "text{font:12px system-ui,sans-serif;fill:#1f2328}.title{font-weight:600;text-anchor:middle;font-size:13px}"
    ".ytick{text-anchor:end}.xtick,.xlabel,.ylabel{text-anchor:middle}.legend{font-size:12px}"
    ".note{color:#57606a}.best{font-weight:600}";

/* Records what was drawn: each plot's series and points, or an error. */
static const char *script =
    "<script>\n"
    "window.addEventListener('error',function(e){document.body.setAttribute('data-script-errors',"
    "(document.body.getAttribute('data-script-errors')||'')+e.message+';');});\n"
    "document.addEventListener('DOMContentLoaded',function(){\n"
    "  var plots=document.querySelectorAll('svg.plot'),drawn=0;\n"
    "  plots.forEach(function(p){var pts=0;p.querySelectorAll('g.series').forEach(function(g){\n"
    "    var l=g.querySelector('polyline');if(l&&l.points&&l.points.numberOfItems>0)pts+=l.points.numberOfItems;});\n"
    "    var box=p.getBBox();if(pts>0&&box.width>0&&box.height>0)drawn++;});\n"
    "  document.body.setAttribute('data-plots',plots.length);\n"
    "  document.body.setAttribute('data-plots-drawn',drawn);\n"
    "});\n"
    "</script>\n";

/* Columns: every ranker's value, then the model's lift over each baseline. */
static void table_row(FILE *f, const st_report *r, int is_auc, uint32_t j, int mt)
{
    for (int i = 0; i < ST_REPORT_RANKERS; i++) {
        if (!r->sum[i]) continue;
        st_stat s = is_auc ? r->sum[i]->auc : r->sum[i]->m[j][mt];
        fprintf(f, "<td%s>%.4f ± %.4f</td>", i == 0 ? " class=best" : "", s.mean, s.half);
    }
    double a = is_auc ? r->sum[0]->auc.mean : r->sum[0]->m[j][mt].mean;
    for (int i = 1; i < ST_REPORT_RANKERS; i++) {
        if (!r->sum[i]) continue;
        double b = is_auc ? r->sum[i]->auc.mean : r->sum[i]->m[j][mt].mean;
        if (b > 0 && isfinite(a)) fprintf(f, "<td>%.2fx</td>", a / b);
        else fprintf(f, "<td>-</td>");
    }
    fprintf(f, "</tr>\n");
}

static void metric_table(FILE *f, const st_report *r)
{
    static const char *label[ST_NMETRICS] = {"precision", "recall", "NDCG", "MAP", "hit rate"};
    static const int order[] = {ST_M_RECALL, ST_M_NDCG, ST_M_PRECISION, ST_M_MAP, ST_M_HIT};
    const st_eval_summary *m = r->sum[0];
    fprintf(f, "<table><tr><th class=l>metric</th><th>K</th>");
    for (int i = 0; i < ST_REPORT_RANKERS; i++)
        if (r->sum[i]) {
            fprintf(f, "<th>");
            html_text(f, r->names[i]);
            fprintf(f, "</th>");
        }
    for (int i = 1; i < ST_REPORT_RANKERS; i++)
        if (r->sum[i]) {
            fprintf(f, "<th>lift over ");
            html_text(f, r->names[i]);
            fprintf(f, "</th>");
        }
    fprintf(f, "</tr>\n");
    for (size_t q = 0; q < sizeof order / sizeof order[0]; q++)
        for (uint32_t j = 0; j < m->nk; j++) {
            fprintf(f, "<tr><td class=l>%s</td><td>%u</td>", j == 0 ? label[order[q]] : "", m->ks[j]);
            table_row(f, r, 0, j, order[q]);
        }
    fprintf(f, "<tr><td class=l>AUC</td><td>all</td>");
    table_row(f, r, 1, 0, 0);
    for (uint32_t j = 0; j < m->nk; j++) {
        fprintf(f, "<tr><td class=l>%s</td><td>%u</td>", j == 0 ? "coverage" : "", m->ks[j]);
        for (int i = 0; i < ST_REPORT_RANKERS; i++)
            if (r->sum[i]) fprintf(f, "<td>%.4f</td>", r->sum[i]->coverage[j]);
        for (int i = 1; i < ST_REPORT_RANKERS; i++)
            if (r->sum[i]) fprintf(f, "<td></td>");
        fprintf(f, "</tr>\n");
    }
    fprintf(f, "</table>\n<p class=note>Mean over %u test users ± the half-width of its 95%% confidence interval. "
               "recall@K is normalised by min(K, held-out segments), so 1 is reachable; a user's training segments "
               "are excluded from its ranking. Coverage: the share of all segments in anyone's top K.</p>\n",
            m->users);
    if (r->notes) {
        fprintf(f, "<p class=note>");
        html_text(f, r->notes);
        fprintf(f, "</p>\n");
    }
}

/* The index of the highest of n stats' means (the cell marked best). */
static int best_of(const st_stat *x, int n)
{
    int b = 0;
    for (int i = 1; i < n; i++)
        if (x[i].mean > x[b].mean) b = i;
    return b;
}

/* The model's (x[0]) lift over ranker i as a cell; empty for the model
 * itself or a ranker at 0. */
static void lift_cell(FILE *f, const st_stat *x, int i)
{
    if (i > 0 && x[i].mean > 0) fprintf(f, "<td>%.2fx</td>", x[0].mean / x[i].mean);
    else fprintf(f, "<td></td>");
}

/* When LOOKALIKE (similar 0) or SIMILAR has no table, a section's note
 * saying why, and 1. */
static int empty_note(FILE *f, const char *title, const st_segeval *g, int similar)
{
    char why[256];
    if (!st_segeval_why_empty(g, similar, why, sizeof why)) return 0;
    fprintf(f, "<h2>%s</h2>\n<p class=note>No figures: ", title);
    html_text(f, why);
    fprintf(f, ".</p>\n");
    return 1;
}

/* LOOKALIKE's table, or why it has none. */
static void lookalike_table(FILE *f, const st_segeval *g)
{
    if (empty_note(f, "Look-alikes", g, 0)) return;
    fprintf(f, "<h2>Look-alikes</h2>\n<p class=note>%u segments: a seed list of %.1f users on average from each "
               "segment's training users is expanded to N users who do not have the segment; the recall is that of "
               "its %.1f held-out users on average. Offline, on the owner's own data: the serving privacy floors do "
               "not apply. Members: the recall of the segment's %.1f other training users among all users but the "
               "seeds.</p>\n<table><tr><th class=l>ranker</th><th>recall@N = held out</th>"
               "<th>recall@N = 10 x held out</th><th>model's lift</th><th>members recall</th></tr>\n",
            g->lal_segments, g->lal_seeds, g->lal_targets, g->lal_members_n);
    int best = best_of(g->lal_recall, ST_LAL_RANKERS);
    for (int i = 0; i < ST_LAL_RANKERS; i++) {
        fprintf(f, "<tr><td class=l>%s</td><td%s>%.4f ± %.4f</td><td>%.4f ± %.4f</td>", st_lal_name(i),
                i == best ? " class=best" : "", g->lal_recall[i].mean, g->lal_recall[i].half, g->lal_recall10[i].mean,
                g->lal_recall10[i].half);
        lift_cell(f, g->lal_recall, i);
        fprintf(f, "<td>%.4f ± %.4f</td></tr>\n", g->lal_members[i].mean, g->lal_members[i].half);
    }
    fprintf(f, "</table>\n");
}

/* SIMILAR's table, or why it has none. */
static void similar_table(FILE *f, const st_segeval *g)
{
    if (empty_note(f, "Similar segments", g, 1)) return;
    fprintf(f, "<h2>Similar segments</h2>\n<p class=note>%u segments: overlap of each ranker's 10 with the "
               "10 segments most co-engaged with the segment in the engagement the model did not train on (cosine of "
               "those user sets: %u known users' held-out segments, %u cold users' every segment). The gain is the "
               "model's overlap minus the ranker's, per segment.</p>\n<table><tr><th class=l>ranker</th>"
               "<th>overlap@10</th><th>model's lift</th><th>model's gain</th></tr>\n",
            g->sim_segments, g->sim_known_users, g->sim_cold_users);
    int best = best_of(g->sim_overlap, ST_SIM_RANKERS);
    for (int i = 0; i < ST_SIM_RANKERS; i++) {
        fprintf(f, "<tr><td class=l>%s</td><td%s>%.4f ± %.4f</td>", st_sim_name(i), i == best ? " class=best" : "",
                g->sim_overlap[i].mean, g->sim_overlap[i].half);
        lift_cell(f, g->sim_overlap, i);
        if (i > 0)
            fprintf(f, "<td>%+.4f ± %.4f</td></tr>\n", fabs(g->sim_gain[i].mean) < 5e-5 ? 0.0 : g->sim_gain[i].mean,
                    g->sim_gain[i].half);
        else fprintf(f, "<td></td></tr>\n");
    }
    fprintf(f, "</table>\n");
}

static int write_page(FILE *f, void *ctx, char *err)
{
    (void)err;
    const st_report *r = ctx;
    fprintf(f, "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n<title>");
    html_text(f, r->title);
    fprintf(f, "</title>\n<style>%s</style>\n%s</head><body>\n<h1>", css, script);
    html_text(f, r->title);
    fprintf(f, "</h1>\n<table class=facts>\n");
    for (const char *const *p = r->facts; p && p[0]; p += 2) {
        fprintf(f, "<tr><td>");
        html_text(f, p[0]);
        fprintf(f, "</td><td>");
        html_text(f, p[1]);
        fprintf(f, "</td></tr>\n");
    }
    fprintf(f, "</table>\n<h2>Metrics</h2>\n");
    metric_table(f, r);
    fprintf(f, "<h2>Plots</h2>\n<div class=plots>\n");
    metric_chart(f, r, ST_M_RECALL, "recall", "recall@K");
    metric_chart(f, r, ST_M_NDCG, "ndcg", "NDCG@K");
    /* loss per iteration */
    {
        uint32_t n = r->iterations;
        double x[1024], y[1024];
        if (n > 1024) n = 1024;
        for (uint32_t i = 0; i < n; i++) {
            x[i] = i + 1;
            y[i] = r->loss ? r->loss[i] : NAN;
        }
        series s = {"training loss", x, y, NULL, n, 0, 1};
        chart c = {"loss", "loss per iteration", "iteration", "loss / weight", 1, n > 1 ? n : 2, 0, 1, 0, NULL, 0, 0};
        y_range(&s, 1, 0, &c.y0, &c.y1);
        chart_write(f, &c, &s, 1);
    }
    if (r->rel) {
        double x[ST_CALIB_BINS], y[ST_CALIB_BINS], hi = 0;
        uint32_t n = 0;
        for (uint32_t q = 0; q < r->rel->bins; q++) {
            if (r->rel->weight[q] <= 0) continue;
            x[n] = r->rel->predicted[q];
            y[n] = r->rel->observed[q];
            if (x[n] > hi) hi = x[n];
            if (y[n] > hi) hi = y[n];
            n++;
        }
        series s = {"observed share held out", x, y, NULL, n, 0, 1};
        chart c = {"reliability", "reliability (test users)", "predicted probability", "observed frequency", 0,
                   hi * 1.05 + 1e-12, 0, hi * 1.05 + 1e-12, 0, NULL, 0, 1};
        chart_write(f, &c, &s, 1);
    }
    {
        double x[ST_REPORT_HIST_BINS], w = (r->hist_hi - r->hist_lo) / ST_REPORT_HIST_BINS;
        for (int b = 0; b < ST_REPORT_HIST_BINS; b++) x[b] = r->hist_lo + (b + 0.5) * w;
        series s[2] = {{"held-out pairs", x, r->hist_pos, NULL, ST_REPORT_HIST_BINS, 0, 0},
                       {"other pairs", x, r->hist_neg, NULL, ST_REPORT_HIST_BINS, 1, 0}};
        chart c = {"histogram", "score histogram (test users)", "score", "share of pairs", r->hist_lo, r->hist_hi,
                   0, 1, 0, NULL, 0, 0};
        y_range(s, 2, 1, &c.y0, &c.y1);
        chart_write(f, &c, s, 2);
    }
    fprintf(f, "</div>\n");
    if (r->rel) {
        fprintf(f, "<h2>Calibration</h2>\n<p>p = 1 / (1 + exp(-(%.6g &middot; score %+.6g))); expected calibration "
                   "error on test users <b>%.6f</b> (%u bins of equal weight; other pairs sampled and weighted).</p>\n"
                   "<table><tr><th>bin</th><th>predicted from</th><th>to</th><th>mean predicted</th><th>observed</th>"
                   "<th>pairs</th><th>held out</th></tr>\n",
                r->calib_a, r->calib_b, r->rel->ece, r->rel->bins);
        for (uint32_t q = 0; q < r->rel->bins; q++)
            if (r->rel->weight[q] > 0)
                fprintf(f, "<tr><td>%u</td><td>%.3g</td><td>%.3g</td><td>%.6f</td><td>%.6f</td><td>%.0f</td>"
                           "<td>%llu</td></tr>\n",
                        q + 1, r->rel->lo[q], r->rel->hi[q], r->rel->predicted[q], r->rel->observed[q],
                        r->rel->weight[q], (unsigned long long)r->rel->positives[q]);
        fprintf(f, "</table>\n");
    }
    if (r->nseg) {
        fprintf(f, "<h2>Recall@%u of the segments held out most</h2>\n<table><tr><th class=l>segment</th>"
                   "<th>test users holding it out</th><th>recall@%u</th></tr>\n",
                r->seg_k, r->seg_k);
        for (uint32_t i = 0; i < r->nseg; i++) {
            fprintf(f, "<tr><td class=l>");
            html_text(f, r->seg_names[i]);
            fprintf(f, "</td><td>%u</td><td>%.4f</td></tr>\n", r->seg_users[i], r->seg_recall[i]);
        }
        fprintf(f, "</table>\n");
    }
    if (r->seg_eval) {
        lookalike_table(f, r->seg_eval);
        similar_table(f, r->seg_eval);
    }
    fprintf(f, "<h2>How to read this</h2>\n<p class=note>Every metric is defined in docs/EVALUATION.md. The model "
               "should sit well above popularity in recall@K and NDCG@K at every K; random is the floor. Interval "
               "bars that do not overlap mean a difference the test users support. In the reliability diagram, "
               "points on the dashed diagonal mean calibrated probabilities; the histogram shows how far the "
               "held-out pairs' scores sit above the rest.</p>\n</body></html>\n");
    return ferror(f) ? -1 : 0;
}

int st_report_write(const char *dir, const st_report *r, char *err)
{
    if (mkdir(dir, 0755) != 0 && errno != EEXIST) return st_seterr(err, "%s: cannot create: %s", dir, strerror(errno));
    size_t n = strlen(dir) + 16;
    char *path = st_malloc(n);
    if (!path) return st_seterr(err, "out of memory");
    snprintf(path, n, "%s/index.html", dir);
    int rc = st_write_atomic(path, write_page, (void *)r, err);
    st_free(path);
    return rc;
}
