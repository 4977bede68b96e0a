# The grader in a container (docs/grading.md, section 3).
#
# The image holds the Python environment, the course package and the hidden tests, and nothing
# else of the kit: no solutions/, no notebooks/, no other tests. Inside it, `grade` runs every
# student in a bubblewrap sandbox of their own (rlhf_lab/grading/bwrap.py), which shows the
# student's processes the Python installation (/usr/local) and nothing of /kit: they see neither
# the package nor tests/hidden/, the submissions or /grades. The container adds a second wall:
# no network, a read-only root, no capabilities, a memory and CPU limit.
#
# Build, from the root of a full checkout:
#   docker build -t rlhf-lab-grader -f docker/grader.Dockerfile .
# Run: the exact command is in docs/grading.md (tests/test_grading_docker.py checks it).
FROM python:3.11-slim

RUN apt-get update \
    && apt-get install -y --no-install-recommends bubblewrap \
    && rm -rf /var/lib/apt/lists/*

COPY requirements.txt /tmp/requirements.txt
RUN grep -v '^-e' /tmp/requirements.txt > /tmp/requirements-pinned.txt \
    && pip install --no-cache-dir --extra-index-url https://download.pytorch.org/whl/cpu \
       -r /tmp/requirements-pinned.txt \
    && rm /tmp/requirements.txt /tmp/requirements-pinned.txt

COPY rlhf_lab /kit/rlhf_lab
COPY tests/hidden /kit/tests/hidden

ENV PYTHONPATH=/kit OMP_NUM_THREADS=1 PYTHONDONTWRITEBYTECODE=1 TQDM_DISABLE=1 HOME=/tmp
WORKDIR /tmp
ENTRYPOINT ["python", "-m", "rlhf_lab", "grade"]
CMD ["/submissions", "--out", "/grades"]
