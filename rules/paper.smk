# ------------------------------------------------------------------ the paper
# Rendered from jinja2 templates; every number comes from the summary files. A PDF is
# built only where a TeX engine is installed (Debian: apt-get install latexmk
# texlive-latex-base texlive-latex-recommended texlive-fonts-recommended).

TEX_ENGINE = shutil.which("latexmk") or shutil.which("pdflatex")
PAPER_FILES = [f"{PAPER}/paper.md", f"{PAPER}/paper.tex"]
if TEX_ENGINE:
    PAPER_FILES.append(f"{PAPER}/paper.pdf")


rule paper:
    input:
        tables=TABLES,
        figures=FIGURE_FILES,
        runs=RUN_SUMMARIES,
        searches=SEARCH_SUMMARIES,
        bench=[GENERATOR_BENCH] if GENERATOR_BENCH else [],
        ceiling=[CEILING_BENCH] if CEILING_BENCH else [],
        spark_floor=[SPARK_FLOOR_BENCH] if SPARK_FLOOR_BENCH else [],
        templates=[f"{TEMPLATES}/{t}.j2" for t in ("body", "paper.md", "paper.tex")],
        code=code_of("render_paper.py")
        + [os.path.relpath(f"{workflow.basedir}/config/full.yaml")],
        script=f"{SCRIPTS}/render_paper.py",
    output:
        md=f"{PAPER}/paper.md",
        tex=f"{PAPER}/paper.tex",
    params:
        summary_dir=lambda w: SUMMARY,
        figures_dir=lambda w: FIGURES,
    log:
        f"{LOGS}/paper/render.log",
    resources:
        bench_slot=1,  # one job at a time (rules/run.smk)
    shell:
        "{PY} {input.script} {CONFIG_ARGS} --summary-dir {params.summary_dir}"
        " --figures-dir {params.figures_dir} --md {output.md} --tex {output.tex} > {log} 2>&1"


rule paper_pdf:
    input:
        tex=f"{PAPER}/paper.tex",
        figures=FIGURE_FILES,
    output:
        f"{PAPER}/paper.pdf",
    params:
        build_dir=lambda w: PAPER,
    log:
        f"{LOGS}/paper/pdf.log",
    resources:
        bench_slot=1,  # one job at a time (rules/run.smk)
    shell:
        "log=$(realpath {log}); cd {params.build_dir} &&"
        " (latexmk -pdf -interaction=nonstopmode paper.tex"
        " || pdflatex -interaction=nonstopmode paper.tex) > $log 2>&1"
